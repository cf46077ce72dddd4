//! The baseline of `benches/http.sh`: a bare warp route answering
//! `GET /api/claude/sessions/{id}` with fixed bytes (a body captured from the real server),
//! on the same warp, hyper and tokio runtime as session-manager but with no guard, no
//! lookup and no serialization. What session-manager adds on top of it is what the bench
//! measures.
//!
//! ```text
//! cargo run --release --example bare_warp -- BODY_FILE [PORT]
//! ```
//! Prints `bare-warp listening on http://127.0.0.1:PORT` once it listens (PORT 0, the
//! default, lets the OS pick); stops on SIGINT or SIGTERM.

use std::net::SocketAddr;

use bytes::Bytes;
use tokio::signal::unix::{signal, SignalKind};
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::reply::Response;
use warp::Filter;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next() else {
        return Err("usage: bare_warp BODY_FILE [PORT]".into());
    };
    let port: u16 = match args.next() {
        Some(port) => port.parse().map_err(|_| format!("bad port {port:?}"))?,
        None => 0,
    };
    let body = Bytes::from(std::fs::read(&file).map_err(|e| format!("{file}: {e}"))?);

    let route = warp::path!("api" / "claude" / "sessions" / String)
        .and(warp::get())
        .map(move |_id: String| {
            let mut response = Response::new(body.clone().into());
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        });

    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("bare-warp listening on http://{}", listener.local_addr()?);
    let mut terminate = signal(SignalKind::terminate())?;
    warp::serve(route)
        .incoming(listener)
        .graceful(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        })
        .run()
        .await;
    Ok(())
}
