//! What keeps the pages safe in a browser: every response carries headers that forbid framing,
//! scripts, content sniffing and leaking the query to other sites in a Referer; and a form post is accepted
//! only from the gatekeeper's own pages, so another site cannot make a visitor's browser submit
//! a write (cross-site request forgery). Clients that are not browsers send no Origin and are
//! not affected; the JSON API needs `application/json`, which a cross-site form cannot send.

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::pages;
use contract::wire::Mode;

/// The pages are plain HTML with one inline style block: nothing else may load or run, forms
/// may only post here, and no other site may frame them.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the safety headers to a response (every response carries them: `public::answer`).
pub fn add_safety_headers(headers: &mut HeaderMap) {
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not `no-referrer`: under it a browser sends `Origin: null` with the pages' own form
        // posts, and the same-origin check below could not tell them from a forgery.
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// Refuses a form post that a browser sent from another site.
pub async fn same_origin_forms(request: Request, next: Next) -> Response {
    if request.method() == Method::POST {
        if let Err(why) = check_same_origin(request.headers()) {
            let message = format!(
                "this form was sent from another site ({why}); forms are accepted only from the \
                 gatekeeper's own pages"
            );
            let mode = if request.uri().path() == "/write" {
                Mode::Write
            } else {
                Mode::Random
            };
            return (
                StatusCode::FORBIDDEN,
                Html(pages::result("", mode, &Err(message))),
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// Ok when the request comes from a page of this host, or from a client that is not a
/// browser (no Origin, no Sec-Fetch-Site).
fn check_same_origin(headers: &HeaderMap) -> Result<(), String> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(origin) = text("origin") {
        let host = text("host").unwrap_or_default();
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        return match origin_host {
            Some(origin_host) if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) => {
                Ok(())
            }
            _ => Err(format!("Origin {origin}, this host {host}")),
        };
    }
    match text("sec-fetch-site") {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(site) => Err(format!("Sec-Fetch-Site {site}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn forms_come_from_this_host() {
        let same = headers(&[
            ("origin", "http://127.0.1.9:8080"),
            ("host", "127.0.1.9:8080"),
        ]);
        assert_eq!(check_same_origin(&same), Ok(()));
        let tls = headers(&[("origin", "https://db.example"), ("host", "DB.example")]);
        assert_eq!(check_same_origin(&tls), Ok(()));
        // curl and other programs: no Origin, no fetch metadata.
        assert_eq!(check_same_origin(&headers(&[("host", "h")])), Ok(()));
        assert_eq!(
            check_same_origin(&headers(&[("sec-fetch-site", "none")])),
            Ok(())
        );
        for refused in [
            headers(&[
                ("origin", "http://evil.example"),
                ("host", "127.0.1.9:8080"),
            ]),
            headers(&[
                ("origin", "http://127.0.1.9:8081"),
                ("host", "127.0.1.9:8080"),
            ]),
            headers(&[("origin", "null"), ("host", "127.0.1.9:8080")]),
            headers(&[("origin", "http://127.0.1.9:8080")]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
        ] {
            assert!(check_same_origin(&refused).is_err(), "{refused:?}");
        }
    }
}
