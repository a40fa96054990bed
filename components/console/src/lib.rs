//! The web console under `/console/`: its pages (static files built into
//! the component: `assets/`, plain HTML, CSS and JavaScript, no build step)
//! and its session API. Pages call Berth's own APIs (`/v2/`, SWR's
//! `/v2/manage/…` and `/v2/<project>/instances/…`, `/berth/v1/…`), which
//! take the session cookie as the user's credentials
//! (`berth_domain::console`): the console can do nothing its user could
//! not do with an access key.
//!
//! - `GET /console/…`: the application (`index.html` for any page path),
//!   `GET /console/assets/<file>`: its files (with an `ETag`);
//! - `POST /console/api/session` `{"username", "password"}`: signs in
//!   (a user's password, or `{region}@{AK}` with a login key), sets the
//!   cookie, answers [`SessionView`]; `GET` answers the current session,
//!   `DELETE` signs out (with the CSRF header). Errors are SWR's JSON.

use berth_domain::console;
use berth_domain::iam::records::{self, Tenant};
use berth_domain::iam::{self, Principal, admin};
use berth_domain::swr::{SwrError, rfc3339};
use berth_guest::http::{Incoming, Reply};
use berth_guest::manage::{oci_fault, ok_json, parse_body};
use berth_guest::{auth, session, store};
use serde::Deserialize;
use spin_sdk::wasip3::http::types::{ErrorCode, Method, Request, Response, Scheme};

struct Console;
spin_sdk::wasip3::http::service::export!(Console);

/// A file of the application: path under `/console/assets/`, type, bytes,
/// and its `ETag`, hashed once per instance (not per request).
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    etag: std::sync::OnceLock<String>,
}

impl Asset {
    fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            use sha2::Digest;
            format!(
                "\"{}\"",
                &hex::encode(sha2::Sha256::digest(self.bytes))[..20]
            )
        })
    }
}

/// One of `assets/`, built in.
macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!("../assets/", $name)),
            etag: std::sync::OnceLock::new(),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: [Asset; 4] = [
    asset!("app.js", JS),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("i18n.js", JS),
    asset!("archive.js", JS),
];

static INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// What the page may load: only this origin's files, nothing inline, no
/// framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

impl spin_sdk::wasip3::exports::http::handler::Guest for Console {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let secure = matches!(request.get_scheme(), Some(Scheme::Https));
        let req = Incoming::new(request);
        let reply = match serve(&req, secure).await {
            Ok(r) => r,
            Err(e) => Reply::json(e.status, e.body()),
        };
        Ok(reply
            .header("content-security-policy", CSP)
            .header("x-content-type-options", "nosniff")
            .header("referrer-policy", "same-origin")
            .header("x-frame-options", "DENY")
            .into_response(req))
    }
}

async fn serve(req: &Incoming, secure: bool) -> Result<Reply, SwrError> {
    let path = req.path.as_str();
    if path == "/console/api/session" {
        let answer = match req.method {
            Method::Get => current(req).await,
            Method::Post => sign_in(req, secure).await,
            Method::Delete => sign_out(req, secure).await,
            _ => Err(SwrError::method_not_allowed()),
        };
        // The CSRF token rides in these answers: never cached.
        return Ok(answer
            .unwrap_or_else(|e| Reply::json(e.status, e.body()))
            .header("cache-control", "no-store"));
    }
    if path.starts_with("/console/api/") {
        return Err(SwrError::not_found(format!("no console API at {path}")));
    }
    if !matches!(req.method, Method::Get | Method::Head) {
        return Err(SwrError::method_not_allowed());
    }
    if path == "/console" {
        return Ok(Reply::new(308).header("location", "/console/"));
    }
    if let Some(name) = path.strip_prefix("/console/assets/") {
        let asset = ASSETS
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| SwrError::not_found(format!("no console file {name}")))?;
        return Ok(file(req, asset));
    }
    // Every other path is a page of the application.
    Ok(file(req, &INDEX))
}

/// A file, or 304 when the browser's copy (`If-None-Match`) is current.
fn file(req: &Incoming, asset: &Asset) -> Reply {
    let etag = asset.etag();
    let reply = if req.header("if-none-match").as_deref() == Some(etag) {
        Reply::new(304)
    } else {
        Reply::new(200)
            .header("content-type", asset.content_type)
            .bytes(asset.bytes.to_vec())
    };
    reply
        .header("etag", etag)
        .header("cache-control", "no-cache")
}

/// What the page knows of its session.
#[derive(serde::Serialize)]
struct SessionView {
    user: String,
    tenant: String,
    project_id: String,
    /// Administers its tenant (users, groups, policies, keys, audit log).
    admin: bool,
    /// Administers every tenant (and runs jobs).
    system_admin: bool,
    /// Signed in with a docker login key (no user administration).
    access_key_login: bool,
    /// Its policies let it create organizations (other rights show per
    /// organization, in each one's `auth` level).
    can_create_namespace: bool,
    csrf: String,
    expires: String,
}

async fn view(p: &Principal, csrf: String, expires: u64) -> Result<SessionView, SwrError> {
    let tenant = store::get_json::<Tenant>(&records::tenant(&p.tenant))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::unauthorized("the session's tenant is gone"))?;
    Ok(SessionView {
        user: p.user.clone(),
        tenant: p.tenant.clone(),
        project_id: tenant.project_id,
        admin: admin::may_administer(p, &p.tenant),
        system_admin: admin::may_manage_tenants(p),
        access_key_login: p.access_key.is_some(),
        can_create_namespace: iam::decide(
            Some(p),
            iam::Action::CreateNamespace,
            &iam::action::namespace_resource("*"),
            &iam::Facts::default(),
        ),
        csrf,
        expires: rfc3339(expires),
    })
}

fn session_id(req: &Incoming) -> Option<String> {
    console::cookie_id(&req.headers_all("cookie").join("; ")).map(str::to_string)
}

async fn current(req: &Incoming) -> Result<Reply, SwrError> {
    let cookie = req.headers_all("cookie").join("; ");
    let (p, s) = session::resolve(Some(&cookie), "GET", None)
        .await
        .map_err(|r| match r {
            session::Refusal::Fault(e) => oci_fault(e),
            r => SwrError::unauthorized(r.message()),
        })?
        .ok_or_else(|| SwrError::unauthorized("not signed in"))?;
    berth_guest::manage::network_allowed(&p.tenant, req).await?;
    ok_json(200, &view(&p, s.csrf, s.expires).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    username: String,
    password: String,
}

async fn sign_in(req: &Incoming, secure: bool) -> Result<Reply, SwrError> {
    use berth_domain::iam::docker::{Login, parse_login};
    // JSON only: a form on another site cannot post one (login CSRF).
    if !req.header("content-type").is_some_and(|t| {
        t.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("application/json")
    }) {
        return Err(SwrError::bad_request(
            "signing in takes a JSON body (Content-Type: application/json)",
        ));
    }
    let body = req
        .body_bytes(16 << 10)
        .await
        .map_err(|e| SwrError::bad_request(e.message))?;
    let b: SignIn = parse_body(&body)?;
    let username = b.username.trim();
    let source = req.header(store::CLIENT_ADDR).unwrap_or_default();
    // A password is checked only from an address its tenant lets in.
    if !auth::login_allowed(username, req)
        .await
        .map_err(oci_fault)?
    {
        return Err(SwrError::unauthorized("wrong user name or password"));
    }
    let login = parse_login(username);
    let Some(p) = auth::login(username, &b.password)
        .await
        .map_err(oci_fault)?
    else {
        // A failed sign-in is recorded in the tenant it names, if it exists.
        let named = match login {
            Login::User { tenant, user } => Some((tenant, user)),
            Login::Account { tenant } => Some((tenant, tenant)),
            Login::AccessKey { .. } => None,
        };
        if let Some((tenant, user)) = named
            && records::valid_identity_name(tenant)
            && store::get(&records::tenant(tenant))
                .await
                .map_err(oci_fault)?
                .is_some()
        {
            berth_guest::manage::audit(
                tenant,
                user.to_string(),
                "POST /console/api/session".into(),
                "/console/api/session".into(),
                401,
                source,
            )
            .await;
        }
        return Err(SwrError::unauthorized("wrong user name or password"));
    };
    berth_guest::manage::network_allowed(&p.tenant, req).await?;
    let (login_key, password_hash, until) = match login {
        // A docker login key: the session ends with the access key behind
        // it, and a temporary key's session at the key's own expiry.
        Login::AccessKey { .. } => {
            let exp = store::credentials::verify_token(&b.password)
                .and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok())
                .and_then(|c| c["exp"].as_u64());
            (true, None, exp)
        }
        _ => {
            let user = store::get_json::<records::User>(&records::user(&p.tenant, &p.user))
                .await
                .map_err(oci_fault)?;
            (false, user.and_then(|u| u.password), None)
        }
    };
    let (id, s) = session::create(&p, login_key, password_hash.as_deref(), until)
        .await
        .map_err(oci_fault)?;
    berth_guest::manage::audit(
        &p.tenant,
        p.user.clone(),
        "POST /console/api/session".into(),
        "/console/api/session".into(),
        201,
        source,
    )
    .await;
    let max_age = s.expires.saturating_sub(s.created);
    let p = Principal {
        access_key: if s.login_key {
            Some(s.access_key.clone().unwrap_or_default())
        } else {
            None
        },
        ..p
    };
    let out = view(&p, s.csrf, s.expires).await?;
    Ok(ok_json(201, &out)?.header("set-cookie", console::set_cookie(&id, max_age, secure)))
}

async fn sign_out(req: &Incoming, secure: bool) -> Result<Reply, SwrError> {
    if let Some(id) = session_id(req) {
        // Only the page itself signs out (a CSRF token of the session).
        if let Some(s) = session::find(&id).await.map_err(oci_fault)? {
            let csrf = req.header(console::CSRF_HEADER).unwrap_or_default();
            if !berth_domain::iam::signing::constant_time_eq(csrf.as_bytes(), s.csrf.as_bytes()) {
                return Err(SwrError::forbidden(format!(
                    "signing out needs the session's CSRF token in {}",
                    console::CSRF_HEADER
                )));
            }
            session::end(&id).await.map_err(oci_fault)?;
        }
    }
    Ok(Reply::new(204).header("set-cookie", console::clear_cookie(secure)))
}
