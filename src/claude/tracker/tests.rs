use serde_json::{json, Map, Value};

use super::*;

fn payload(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn observe(
    tracker: &mut Tracker,
    id: &str,
    name: &str,
    cwd: Option<&str>,
    found: Option<Attribution>,
    at: f64,
) -> Observed {
    let empty = payload(json!({}));
    let event = HookEvent::read(name, &empty);
    tracker.observe(id, &event, cwd, None, found, at)
}

fn by(session: Uuid, rank: Rank) -> Option<Attribution> {
    Some(Attribution {
        session,
        agent: (rank == Rank::Agent).then(|| "coder".to_owned()),
        rank,
    })
}

#[test]
fn the_longest_working_directory_containing_the_cwd_wins() {
    let (outer, inner) = (Uuid::new_v4(), Uuid::new_v4());
    let candidates = Candidates {
        directories: vec![
            (outer, "/work".into()),
            (inner, "/work/repo".into()),
            (Uuid::new_v4(), "/work/rep".into()),
        ],
        ..Candidates::default()
    };
    let best = |cwd| candidates.best(Some(cwd)).map(|a| a.session);
    assert_eq!(best("/work/repo/src"), Some(inner));
    assert_eq!(best("/work/repo"), Some(inner));
    assert_eq!(
        best("/work/repository"),
        Some(outer),
        "a prefix of a name is not a parent"
    );
    assert_eq!(best("/elsewhere"), None);
    assert_eq!(candidates.best(None), None);
}

#[test]
fn the_rules_apply_strongest_first() {
    let (agent, header, dir) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut candidates = Candidates {
        agent: Some((agent, "coder".into())),
        header: Some((header, None)),
        directories: vec![(dir, "/w".into())],
    };
    assert_eq!(candidates.best(Some("/w")).unwrap().rank, Rank::Agent);
    candidates.agent = None;
    assert_eq!(candidates.best(Some("/w")).unwrap().session, header);
    candidates.header = None;
    assert_eq!(candidates.best(Some("/w")).unwrap().session, dir);
}

#[test]
fn an_attribution_is_kept_unless_a_stronger_rule_finds_another() {
    let mut tracker = Tracker::default();
    let (dir, named, agent) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let first = observe(&mut tracker, "c1", "SessionStart", Some("/w"), None, 1.0);
    assert_eq!(first.activity.session, None);
    assert!(first.announced());
    let seen = observe(
        &mut tracker,
        "c1",
        "UserPromptSubmit",
        None,
        by(dir, Rank::Directory),
        2.0,
    );
    assert_eq!(seen.activity.session, Some(dir));
    assert_eq!(seen.previous_session, Some(None));
    assert_eq!(tracker.of_session(dir).len(), 1);
    // A weaker or equal rule changes nothing.
    let same = observe(
        &mut tracker,
        "c1",
        "PreToolUse",
        None,
        by(named, Rank::Directory),
        3.0,
    );
    assert_eq!(same.activity.session, Some(dir));
    assert!(!same.announced(), "working → working, same session");
    let moved = observe(
        &mut tracker,
        "c1",
        "PostToolUse",
        None,
        by(named, Rank::Header),
        4.0,
    );
    assert_eq!(moved.activity.session, Some(named));
    assert!(moved.announced());
    assert!(tracker.of_session(dir).is_empty());
    let ours = observe(
        &mut tracker,
        "c1",
        "Stop",
        None,
        by(agent, Rank::Agent),
        5.0,
    );
    assert_eq!(ours.activity.agent.as_deref(), Some("coder"));
    let kept = observe(
        &mut tracker,
        "c1",
        "SessionEnd",
        None,
        by(named, Rank::Header),
        6.0,
    );
    assert_eq!(kept.activity.session, Some(agent));
    assert_eq!(kept.activity.state, ActivityState::Ended);
    assert_eq!(tracker.rank("c1"), Rank::Agent);
}

#[test]
fn since_moves_only_with_the_state_and_errors_stay_with_failed() {
    let mut tracker = Tracker::default();
    observe(&mut tracker, "c", "UserPromptSubmit", None, None, 1.0);
    let still = observe(&mut tracker, "c", "PreToolUse", None, None, 2.0);
    assert_eq!(
        (still.activity.since, still.activity.last_event_at),
        (1.0, 2.0)
    );
    let failure = payload(json!({"error": "overloaded"}));
    let failed = tracker.observe(
        "c",
        &HookEvent::read("StopFailure", &failure),
        None,
        None,
        None,
        3.0,
    );
    assert_eq!(failed.activity.error.as_deref(), Some("overloaded"));
    assert_eq!(failed.activity.since, 3.0);
    let again = observe(&mut tracker, "c", "UserPromptSubmit", None, None, 4.0);
    assert_eq!(again.activity.error, None);
}

#[test]
fn a_row_is_stored_when_it_changes_and_at_least_every_few_seconds() {
    let mut tracker = Tracker::default();
    let first = observe(&mut tracker, "c", "UserPromptSubmit", Some("/w"), None, 1.0);
    assert!(first.row.is_some(), "first seen");
    let same = observe(&mut tracker, "c", "PreToolUse", Some("/w"), None, 2.0);
    assert!(same.row.is_none(), "only last_event moved");
    let moved = observe(&mut tracker, "c", "PreToolUse", Some("/w/sub"), None, 2.5);
    assert!(moved.row.is_some(), "the cwd changed");
    let late = observe(
        &mut tracker,
        "c",
        "PostToolUse",
        Some("/w/sub"),
        None,
        2.5 + STORE_EVERY_SECONDS,
    );
    assert_eq!(late.row.unwrap().last_event, "PostToolUse");
    let waiting = observe(&mut tracker, "c", "PermissionRequest", None, None, 9.0);
    assert!(waiting.row.is_some(), "the state changed");
}

#[test]
fn an_exited_agent_ends_its_conversations_and_a_purge_forgets_them() {
    let mut tracker = Tracker::default();
    let session = Uuid::new_v4();
    observe(
        &mut tracker,
        "c",
        "UserPromptSubmit",
        None,
        by(session, Rank::Agent),
        1.0,
    );
    observe(
        &mut tracker,
        "other",
        "UserPromptSubmit",
        None,
        by(session, Rank::Header),
        1.0,
    );
    assert_eq!(
        tracker.conversations_of(session, "coder"),
        vec!["c".to_owned()]
    );
    let ended = tracker.end("c", 2.0).unwrap();
    assert_eq!(ended.activity.state, ActivityState::Ended);
    assert_eq!(ended.previous, Some(ActivityState::Working));
    assert!(tracker.end("c", 3.0).is_none());
    assert!(tracker.conversations_of(session, "coder").is_empty());
    // Its process runs again: the conversation resumes, idle.
    assert_eq!(
        tracker.ended_conversations_of(session, "coder"),
        vec!["c".to_owned()]
    );
    let resumed = tracker.resume("c", 4.0).unwrap();
    assert_eq!(resumed.activity.state, ActivityState::Idle);
    assert_eq!(resumed.previous, Some(ActivityState::Ended));
    assert!(tracker.resume("c", 5.0).is_none());
    assert!(tracker.end("c", 6.0).is_some());
    tracker.forget_session(session);
    assert!(tracker.all().is_empty());
}

#[test]
fn what_is_stored_is_what_is_restored() {
    let mut tracker = Tracker::default();
    let session = Uuid::new_v4();
    let observed = observe(
        &mut tracker,
        "c",
        "PermissionRequest",
        Some("/w"),
        by(session, Rank::Agent),
        1.0,
    );
    let restored = Tracker::restore(vec![observed.row.clone().unwrap()]);
    assert_eq!(restored.get("c"), Some(&observed.activity));
    assert_eq!(restored.rank("c"), Rank::Agent);
    assert_eq!(restored.of_session(session).len(), 1);
    assert_eq!(
        restored.count_by_state()[&ActivityState::WaitingForInput],
        1
    );
}
