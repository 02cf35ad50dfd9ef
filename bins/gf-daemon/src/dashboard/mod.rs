//! The web dashboard: one self-contained page served at `GET /dashboard`.
//!
//! The page's HTML, CSS and JavaScript live beside this module as ordinary files
//! (`index.html`, `style.css`, `app.js`), are embedded in the binary with `include_str!`,
//! and are assembled once into a single document: nothing is fetched from anywhere else,
//! so the dashboard works on a machine without internet access. The page itself is static
//! and needs no token; it asks the operator for one, keeps it in `sessionStorage`, and
//! uses it for `WS /ws/dashboard`, `WS /ws/halt-status` (`?token=`) and the halt,
//! checklist and resume calls (`Authorization: Bearer`).
//!
//! The response carries a Content-Security-Policy that allows only the embedded script
//! and style (by SHA-256 hash) and connections to the daemon itself, so a page that tried
//! to load anything from elsewhere would be refused by the browser.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const TEMPLATE: &str = include_str!("index.html");
const STYLE: &str = include_str!("style.css");
const SCRIPT: &str = include_str!("app.js");

const STYLE_SLOT: &str = "/*@STYLE@*/";
const SCRIPT_SLOT: &str = "/*@SCRIPT@*/";

/// The `Content-Type` of the page.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// The assembled document and the policy that goes with it.
#[derive(Debug)]
struct Page {
    html: String,
    csp: String,
}

static PAGE: LazyLock<Page> = LazyLock::new(|| {
    assert!(
        TEMPLATE.matches(STYLE_SLOT).count() == 1 && TEMPLATE.matches(SCRIPT_SLOT).count() == 1,
        "index.html must hold exactly one style slot and one script slot"
    );
    let html = TEMPLATE
        .replacen(STYLE_SLOT, STYLE, 1)
        .replacen(SCRIPT_SLOT, SCRIPT, 1);
    let csp = format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
        base64(&Sha256::digest(SCRIPT.as_bytes())),
        base64(&Sha256::digest(STYLE.as_bytes())),
    );
    Page { html, csp }
});

/// `GET /dashboard`: the page, with a policy that forbids loading anything from elsewhere.
pub async fn page() -> Response {
    let page = &*PAGE;
    (
        [
            (header::CONTENT_TYPE, CONTENT_TYPE),
            (header::CONTENT_SECURITY_POLICY, page.csp.as_str()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        page.html.as_str(),
    )
        .into_response()
}

/// Standard base64 with padding (RFC 4648 §4), as CSP hash sources are written.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;

    async fn served() -> (axum::http::HeaderMap, String) {
        let response = page().await;
        assert_eq!(response.status(), axum::http::StatusCode::OK);
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), 4 << 20)
            .await
            .expect("page body");
        (
            headers,
            String::from_utf8(body.to_vec()).expect("utf-8 page"),
        )
    }

    #[tokio::test]
    async fn page_is_html_with_the_embedded_style_and_script() {
        let (headers, body) = served().await;
        assert_eq!(headers[header::CONTENT_TYPE], CONTENT_TYPE);
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(body.starts_with("<!doctype html>"), "{}", &body[..40]);
        assert!(body.contains(STYLE) && body.contains(SCRIPT));
        assert!(!body.contains(STYLE_SLOT) && !body.contains(SCRIPT_SLOT));
        assert!(body.contains(r#"<meta name="viewport" content="width=device-width"#));
        for id in ["state-banner", "halt-button", "halt-dialog", "disconnected"] {
            assert!(body.contains(&format!("id=\"{id}\"")), "missing #{id}");
        }
    }

    #[tokio::test]
    async fn page_references_no_external_host() {
        let (headers, body) = served().await;
        let lower = body.to_ascii_lowercase();
        for needle in [
            "http://",
            "https://",
            "src=\"//",
            "href=\"//",
            "url(//",
            "@import",
        ] {
            assert!(
                !lower.contains(needle),
                "the page must be self-contained but contains {needle:?}"
            );
        }
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(csp.contains("connect-src 'self';"), "{csp}");
    }

    #[test]
    fn policy_hashes_match_the_inline_script_and_style() {
        // The browser hashes the exact text between the tags; the template must not add
        // anything around the slot, or the page would be blocked by its own policy.
        let script = format!("<script>{SCRIPT}</script>");
        let style = format!("<style>{STYLE}</style>");
        assert!(PAGE.html.contains(&script) && PAGE.html.contains(&style));
        let script_hash = base64(&Sha256::digest(SCRIPT.as_bytes()));
        assert!(
            PAGE.csp
                .contains(&format!("script-src 'sha256-{script_hash}'"))
        );
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        struct Case {
            input: &'static str,
            expected: &'static str,
        }
        let cases = [
            Case {
                input: "",
                expected: "",
            },
            Case {
                input: "f",
                expected: "Zg==",
            },
            Case {
                input: "fo",
                expected: "Zm8=",
            },
            Case {
                input: "foo",
                expected: "Zm9v",
            },
            Case {
                input: "foob",
                expected: "Zm9vYg==",
            },
            Case {
                input: "fooba",
                expected: "Zm9vYmE=",
            },
            Case {
                input: "foobar",
                expected: "Zm9vYmFy",
            },
        ];
        for case in cases {
            assert_eq!(
                base64(case.input.as_bytes()),
                case.expected,
                "{:?}",
                case.input
            );
        }
        // The well-known CSP hash of an empty script.
        assert_eq!(
            base64(&Sha256::digest(b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }
}
