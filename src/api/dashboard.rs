//! The dashboard: a static page and its assets, embedded in the binary (no build step, no
//! files to install). `GET /` is the page, `GET /assets/{name}` its scripts, styles and the
//! vendored libraries (uPlot for the charts; xterm.js and its fit addon for agents'
//! terminals). They hold no data: the page reads everything through the
//! API and the WebSocket, with the token when the server has one, so `security` lets these
//! GETs through without it (a browser cannot send a header when it loads a page).
//!
//! Each answer carries an `ETag` (a digest of the content) and `Cache-Control: no-cache`:
//! a browser revalidates and gets a 304 while the binary is the same, and never keeps a
//! stale script after an upgrade.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};
use warp::http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    X_CONTENT_TYPE_OPTIONS,
};
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

/// The path prefix of the assets.
pub(crate) const ASSETS_PREFIX: &str = "/assets/";

/// The page may load only its own assets and talk only to its own server (fetch and
/// WebSocket); nothing may frame it.
///
/// One loosening, for xterm.js: its renderer writes its theme, font and cell-size rules
/// into `<style>` elements it creates (and cannot be given a nonce), so inline style
/// *elements* are allowed (`style-src-elem`). Inline style attributes stay refused
/// (`style-src`, which `style-src-attr` falls back to), scripts stay the page's own files,
/// and the page writes every piece of data as text, never as markup, so nothing foreign can
/// become a `<style>`.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
                   style-src 'self'; style-src-elem 'self' 'unsafe-inline'; \
                   script-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
                   form-action 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Its strong `ETag`, computed at its first request.
    tag: OnceLock<HeaderValue>,
}

impl Asset {
    const fn new(name: &'static str, content_type: &'static str, body: &'static [u8]) -> Asset {
        Asset {
            name,
            content_type,
            body,
            tag: OnceLock::new(),
        }
    }

    /// A digest of the content.
    fn etag(&self) -> &HeaderValue {
        self.tag.get_or_init(|| {
            let digest = Sha256::digest(self.body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header")
        })
    }
}

static INDEX: Asset = Asset::new(
    "index.html",
    "text/html; charset=utf-8",
    include_bytes!("../../assets/dashboard/index.html"),
);

static ASSETS: [Asset; 7] = [
    Asset::new(
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard/dashboard.js"),
    ),
    Asset::new(
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/dashboard/dashboard.css"),
    ),
    Asset::new(
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/uPlot.iife.min.js"),
    ),
    Asset::new(
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/vendor/uPlot.min.css"),
    ),
    Asset::new(
        "xterm.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/xterm.js"),
    ),
    Asset::new(
        "xterm.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/vendor/xterm.css"),
    ),
    Asset::new(
        "addon-fit.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/addon-fit.js"),
    ),
];

/// Whether `path` is the page or an asset (served without the token on GET and HEAD).
pub(crate) fn is_static(path: &str) -> bool {
    path == "/" || path.starts_with(ASSETS_PREFIX)
}

/// `GET /`.
pub(crate) fn index(request: &HeaderMap) -> Response {
    serve(&INDEX, request)
}

/// `GET /assets/{name}`; `None` for a name that is not embedded.
pub(crate) fn asset(name: &str, request: &HeaderMap) -> Option<Response> {
    let asset = ASSETS.iter().find(|asset| asset.name == name)?;
    Some(serve(asset, request))
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let tag = asset.etag();
    let fresh = request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(','))
        .any(|candidate| {
            let candidate = candidate.trim();
            candidate == "*" || candidate.trim_start_matches("W/").as_bytes() == tag.as_bytes()
        });
    let mut response = if fresh {
        let mut response = Response::default();
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let mut response = Response::new(asset.body.into());
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
        response
    };
    let headers = response.headers_mut();
    headers.insert(ETAG, tag.clone());
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if asset.content_type.starts_with("text/html") {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_names_is_embedded() {
        let page = std::str::from_utf8(INDEX.body).unwrap();
        let named: Vec<&str> = page
            .split(ASSETS_PREFIX)
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap())
            .collect();
        assert!(named.len() >= 4, "{named:?}");
        for name in named {
            assert!(
                asset(name, &HeaderMap::new()).is_some(),
                "{name} is not embedded"
            );
        }
    }

    #[test]
    fn a_matching_etag_gets_a_304_and_another_the_file() {
        let first = asset("dashboard.js", &HeaderMap::new()).unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(
            first.headers()[CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let tag = first.headers()[ETAG].clone();
        let mut request = HeaderMap::new();
        request.insert(IF_NONE_MATCH, tag.clone());
        let again = asset("dashboard.js", &request).unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[ETAG], tag);

        request.insert(IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(
            asset("dashboard.js", &request).unwrap().status(),
            StatusCode::OK
        );
        // Each file has its own tag.
        let css = asset("dashboard.css", &HeaderMap::new()).unwrap();
        assert_ne!(css.headers()[ETAG], tag);
        assert!(asset("nope.js", &HeaderMap::new()).is_none());
    }
}
