use super::*;

fn plain(bytes: &[u8]) -> (Vec<String>, String) {
    let mut text = PlainText::default();
    vte::Parser::new().advance(&mut text, bytes);
    (text.lines, text.line)
}

#[test]
fn escape_sequences_are_stripped_from_the_plain_text() {
    let (lines, rest) =
        plain(b"\x1b]0;title\x07\x1b[1;32mgreen\x1b[0m text\r\n\x1b[2K\x1b[Gab\x08c\tx\nlast");
    assert_eq!(lines, ["green text", "ac\tx"]);
    assert_eq!(rest, "last");
}

#[test]
fn a_line_without_newline_is_cut_at_the_line_limit() {
    let (lines, rest) = plain("é".repeat(MAX_LINE_BYTES).as_bytes());
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].len(), MAX_LINE_BYTES);
    assert_eq!(rest.len(), MAX_LINE_BYTES);
}

#[test]
fn the_screen_holds_rows_cursor_and_title() {
    let terminal = Terminal::new(TerminalSize::new(4, 20), 1024);
    terminal.output(b"\x1b]2;my title\x07hello   \r\n\x1b[31mworld\x1b[0m");
    let screen = terminal.screen();
    assert_eq!(screen.size, TerminalSize::new(4, 20));
    assert_eq!(screen.lines, ["hello", "world", "", ""]);
    assert_eq!(screen.cursor, (1, 5));
    assert_eq!(screen.title, "my title");
    assert!(!screen.running);
}

#[test]
fn the_scrollback_keeps_the_last_bytes_from_a_line_start() {
    let terminal = Terminal::new(DEFAULT_SIZE, 32);
    for i in 0..10 {
        terminal.output(format!("line {i}\r\n").as_bytes());
    }
    let viewer = terminal.attach();
    let text = String::from_utf8(viewer.scrollback.to_vec()).unwrap();
    assert!(text.len() <= 32, "{text:?}");
    assert!(text.starts_with("line "), "starts on a line: {text:?}");
    assert!(text.ends_with("line 9\r\n"), "{text:?}");
}

#[test]
fn a_viewer_gets_the_scrollback_then_every_later_chunk() {
    let terminal = Terminal::new(DEFAULT_SIZE, 1024);
    terminal.output(b"before ");
    let mut first = terminal.attach();
    let mut second = terminal.attach();
    assert_eq!(terminal.viewers(), 2);
    terminal.output(b"after");
    assert_eq!(&first.scrollback[..], b"before ");
    for viewer in [&mut first, &mut second] {
        assert_eq!(&viewer.live.try_recv().unwrap()[..], b"after");
    }
}

#[test]
fn a_viewer_that_falls_behind_is_told_so() {
    let terminal = Terminal::new(DEFAULT_SIZE, 1024);
    let mut viewer = terminal.attach();
    for _ in 0..=VIEWER_BACKLOG {
        terminal.output(b"x");
    }
    assert!(matches!(
        viewer.live.try_recv(),
        Err(broadcast::error::TryRecvError::Lagged(_))
    ));
}

#[tokio::test]
async fn input_without_a_process_is_refused() {
    let terminal = Terminal::new(DEFAULT_SIZE, 1024);
    assert!(matches!(
        terminal.input(b"x").await,
        Err(TerminalError::NotRunning)
    ));
}

#[test]
fn a_resize_without_a_process_is_kept_for_the_next_one() {
    let terminal = Terminal::new(DEFAULT_SIZE, 1024);
    terminal.resize(TerminalSize::new(10, 30)).unwrap();
    assert_eq!(terminal.size(), TerminalSize::new(10, 30));
    assert_eq!(terminal.screen().lines.len(), 10);
}

#[test]
fn sizes_out_of_range_name_their_field() {
    assert!(checked_size(1, MAX_DIMENSION.into()).is_ok());
    for (rows, cols, field) in [(0, 80, "rows"), (24, 0, "cols"), (24, 1001, "cols")] {
        match checked_size(rows, cols) {
            Err(TerminalError::BadSize { field: named, .. }) => assert_eq!(named, field),
            other => panic!("{rows}x{cols}: {other:?}"),
        }
    }
    let terminal = Terminal::new(DEFAULT_SIZE, 1024);
    assert!(terminal.resize(TerminalSize::new(0, 10)).is_err());
    assert_eq!(terminal.size(), DEFAULT_SIZE);
}

#[test]
fn closing_ends_every_viewer_and_refuses_new_ones_nothing_live() {
    let terminal = Terminal::new(DEFAULT_SIZE, 1024);
    terminal.output(b"kept");
    let mut before = terminal.attach();
    terminal.close();
    assert!(matches!(
        before.live.try_recv(),
        Err(broadcast::error::TryRecvError::Closed)
    ));
    let mut after = terminal.attach();
    assert_eq!(&after.scrollback[..], b"kept");
    assert!(matches!(
        after.live.try_recv(),
        Err(broadcast::error::TryRecvError::Closed)
    ));
    assert_eq!(terminal.viewers(), 0);
}

#[test]
fn a_full_scrollback_holds_its_limit_and_no_more() {
    let limit = 100_000;
    let terminal = Terminal::new(DEFAULT_SIZE, limit);
    let chunk = [b'x'; 4096];
    for _ in 0..100 {
        terminal.output(&chunk);
    }
    let state = terminal.state();
    assert_eq!(state.scrollback.len(), limit);
    assert!(
        state.scrollback.capacity() < limit + 4096,
        "{}",
        state.scrollback.capacity()
    );
    drop(state);
    // A chunk larger than the whole scrollback keeps its end.
    let big: Vec<u8> = (0..limit * 2).map(|i| (i % 251) as u8).collect();
    terminal.output(&big);
    assert_eq!(&terminal.attach().scrollback[..], &big[limit..]);
}
