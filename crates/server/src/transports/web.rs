//! Browsers as clients, on the gRPC port: gRPC-web translation (tonic-web), CORS for pages
//! served from other origins, and the annotation page itself (built from
//! `crates/server/web/`, embedded in the binary).
//!
//! The port keeps serving gRPC over HTTP/2 as before; HTTP/1.1 is accepted too, for
//! gRPC-web calls and for `GET /`, which answers the page.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ServerError;

/// The page's files, as `npm run build` in `crates/server/web/` wrote them.
const INDEX_HTML: &[u8] = include_bytes!("../../web/dist/index.html");
const APP_JS: &[u8] = include_bytes!("../../web/dist/app.js");
const APP_CSS: &[u8] = include_bytes!("../../web/dist/app.css");

/// How long browsers may cache a CORS preflight answer.
const PREFLIGHT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Settings for browser clients.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct WebConfig {
    /// Origins (scheme://host:port) whose pages may call the API over gRPC-web, comma
    /// separated; `*` allows any origin. Empty (the default): only the page this server
    /// serves itself (same origin) can call it.
    #[arg(
        long,
        env = "MOBILESAM_CORS_ALLOW_ORIGIN",
        value_delimiter = ',',
        num_args = 0..
    )]
    pub cors_allow_origin: Vec<String>,

    /// Serve the annotation page at `/` on the gRPC port (`false` turns it off; gRPC-web
    /// stays on).
    #[arg(
        long,
        env = "MOBILESAM_WEB_PAGE",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub web_page: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            cors_allow_origin: Vec::new(),
            web_page: true,
        }
    }
}

impl WebConfig {
    /// The CORS layer for the configured origins; an origin that is not a valid header
    /// value is a configuration error.
    pub fn cors(&self) -> Result<CorsLayer, ServerError> {
        let origins: Vec<&str> = self
            .cors_allow_origin
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .collect();
        let allow = if origins.contains(&"*") {
            AllowOrigin::any()
        } else {
            let list = origins
                .iter()
                .map(|origin| {
                    HeaderValue::from_str(origin.trim_end_matches('/')).map_err(|_| {
                        ServerError::Config(format!(
                            "--cors-allow-origin: `{origin}` is not an origin"
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            AllowOrigin::list(list)
        };
        let header = HeaderName::from_static;
        Ok(CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::POST, Method::OPTIONS])
            .allow_headers([
                header("content-type"),
                header("x-grpc-web"),
                header("x-user-agent"),
                header("grpc-timeout"),
                header("authorization"),
                header("connect-protocol-version"),
            ])
            .expose_headers([
                header("grpc-status"),
                header("grpc-message"),
                header("grpc-status-details-bin"),
            ])
            .max_age(PREFLIGHT_MAX_AGE))
    }

    /// Adds the page's routes to the gRPC router when the page is on.
    pub fn add_page(&self, router: axum::Router) -> axum::Router {
        if !self.web_page {
            return router;
        }
        router
            .route(
                "/",
                get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
            )
            .route(
                "/index.html",
                get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
            )
            .route(
                "/app.js",
                get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
            )
            .route(
                "/app.css",
                get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
            )
    }
}

fn asset(content_type: &'static str, body: &'static [u8]) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_origins_are_config_errors() {
        let config = WebConfig {
            cors_allow_origin: vec!["http://ok.example".into(), "bad\norigin".into()],
            web_page: true,
        };
        let error = config.cors().unwrap_err().to_string();
        assert!(error.contains("--cors-allow-origin"), "{error}");
        let any = WebConfig {
            cors_allow_origin: vec!["*".into()],
            web_page: true,
        };
        assert!(any.cors().is_ok());
    }

    #[test]
    fn flags_parse() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            web: WebConfig,
        }
        let cli = Cli::try_parse_from(["serve"]).expect("defaults");
        assert_eq!(cli.web, WebConfig::default());
        let cli = Cli::try_parse_from([
            "serve",
            "--cors-allow-origin",
            "http://a.example,https://b.example:8443",
            "--web-page",
            "false",
        ])
        .expect("flags");
        assert_eq!(
            cli.web.cors_allow_origin,
            ["http://a.example", "https://b.example:8443"]
        );
        assert!(!cli.web.web_page);
        assert!(cli.web.cors().is_ok());
    }

    #[test]
    fn the_embedded_page_loads_its_script() {
        let html = std::str::from_utf8(INDEX_HTML).expect("utf-8 page");
        assert!(html.contains("app.js"), "{html}");
        assert!(!APP_JS.is_empty());
    }
}
