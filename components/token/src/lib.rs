//! The Docker token endpoint (`/service/token`), the `realm` of the
//! registry's `WWW-Authenticate` challenge. Clients send their credentials
//! here once (Basic, or the OAuth2 password grant) and get a short-lived
//! signed token listing exactly the repository actions they hold, which
//! the registry router then checks without touching the store.
//!
//! Credentials: a user's password (`user@tenant`, or `tenant` for the
//! account), SWR's long-term login (`{region}@{AK}` with the HMAC of the AK
//! by the SK) or a temporary login key. No credentials: a token for what
//! is public.

use berth_domain::iam::Principal;
use berth_domain::iam::docker::{self, Access, RegistryClaims};
use berth_domain::{ErrorCode, OciError};
use berth_guest::http::{Incoming, Reply};
use berth_guest::{auth, store};
use spin_sdk::wasip3::http::types::{ErrorCode as HttpError, Method, Request, Response};

struct Token;
spin_sdk::wasip3::http::service::export!(Token);

impl spin_sdk::wasip3::exports::http::handler::Guest for Token {
    async fn handle(request: Request) -> Result<Response, HttpError> {
        berth_guest::serve(request, token).await
    }
}

/// Token lifetime: Distribution's token servers default to 5 minutes.
const DEFAULT_TTL: u64 = 300;

fn unauthorized(message: &str) -> OciError {
    OciError::new(ErrorCode::Unauthorized, message)
}

async fn token(req: &Incoming) -> Result<Reply, OciError> {
    // Credentials and scopes: from the query and Basic (GET, the docker
    // flow) or from a form body (POST, the OAuth2 password grant).
    let (credentials, scopes, oauth) = match req.method {
        Method::Get => {
            let creds =
                match req.header("authorization") {
                    Some(h) => Some(docker::parse_basic(&h).ok_or_else(|| {
                        unauthorized("the token endpoint takes Basic credentials")
                    })?),
                    None => None,
                };
            let scopes: Vec<String> = req
                .query
                .iter()
                .filter(|(k, _)| k == "scope")
                .flat_map(|(_, v)| v.split(' ').map(String::from).collect::<Vec<_>>())
                .collect();
            (creds, scopes, false)
        }
        Method::Post => {
            let body = req.body_bytes(64 << 10).await?;
            let form = berth_domain::route::query_pairs(&String::from_utf8_lossy(&body));
            let get = |k: &str| berth_domain::route::query_get(&form, k).map(String::from);
            if get("grant_type").as_deref() != Some("password") {
                return Err(OciError::unsupported(
                    "only grant_type=password is supported (refresh tokens are not issued)",
                )
                .with_status(400));
            }
            let creds = match (get("username"), get("password")) {
                (Some(u), Some(p)) => Some((u, p)),
                _ => return Err(unauthorized("username and password are required")),
            };
            let scopes = get("scope")
                .map(|s| s.split(' ').map(String::from).collect())
                .unwrap_or_default();
            (creds, scopes, true)
        }
        _ => return Err(OciError::method_not_allowed()),
    };

    // A password is checked only from an address its tenant lets in.
    if let Some((user, _)) = &credentials
        && !auth::login_allowed(user, req).await?
    {
        return Err(unauthorized("invalid username or password"));
    }
    let who: Option<Principal> = match &credentials {
        Some((user, password)) => Some(
            auth::login(user, password)
                .await?
                .ok_or_else(|| unauthorized("invalid username or password"))?,
        ),
        None => None,
    };
    // docker login from an address the user's tenant does not let in.
    if let Some(p) = &who
        && let Err(message) = auth::network_allows(&p.tenant, req).await?
    {
        return Err(OciError::new(ErrorCode::Denied, message));
    }

    let mut access = Vec::new();
    for scope in scopes.iter().filter(|s| !s.is_empty()) {
        let Some(asked) = docker::parse_scope(scope) else {
            return Err(OciError::unsupported(format!(
                "invalid scope {scope:?}: expected repository:<valid repository name>:<actions> or registry:catalog:*"
            ))
            .with_status(400));
        };
        match asked.kind.as_str() {
            "repository" => {
                let wanted = docker::requested(&asked.actions);
                let granted = auth::docker_actions(who.as_ref(), &asked.name, &wanted).await?;
                // One entry per basis: each is re-checked on every use.
                access.extend(docker::grant_entries(&asked, &granted));
            }
            // The catalog lists the caller's own tenant only.
            _ => access.push(Access {
                actions: if who.is_some() {
                    vec!["*".to_string()]
                } else {
                    Vec::new()
                },
                ..asked
            }),
        }
    }

    let claims = RegistryClaims {
        kind: "registry".into(),
        tenant: who.as_ref().map(|p| p.tenant.clone()).unwrap_or_default(),
        sub: who.as_ref().map(|p| p.user.clone()).unwrap_or_default(),
        uid: who.as_ref().map(|p| p.user_id.clone()).unwrap_or_default(),
        access,
        ak: None,
        // A token issued on an access key's credential lives as long as
        // the key does.
        key: who.as_ref().and_then(|p| p.access_key.clone()),
    };
    let ttl = store::limit("token_ttl_seconds", DEFAULT_TTL);
    let token = store::credentials::issue_token(
        &serde_json::to_string(&claims).expect("claims serialize"),
        ttl as u32,
    );
    if token.is_empty() {
        return Err(OciError::internal("the host could not sign a token"));
    }
    let now = store::now();
    let body = if oauth {
        serde_json::json!({ "access_token": token, "expires_in": ttl, "scope": scopes.join(" "), "issued_at": berth_domain::swr::rfc3339(now) })
    } else {
        serde_json::json!({ "token": token, "access_token": token, "expires_in": ttl, "issued_at": berth_domain::swr::rfc3339(now) })
    };
    Ok(Reply::json(200, serde_json::to_vec(&body).expect("json"))
        .header("cache-control", "no-store"))
}
