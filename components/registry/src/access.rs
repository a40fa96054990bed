//! Who is calling `/v2/`, whether they may, and the audit trail of what
//! they changed.

use berth_domain::admission;
use berth_domain::iam::docker::{self, RegistryClaims};
use berth_domain::iam::records::{self, Namespace};
use berth_domain::iam::{self, Action, Principal};
use berth_domain::route::{self, Route};
use berth_domain::{ErrorCode, OciError};
use berth_guest::http::Reply;
use berth_guest::namespaces::{self, CreateError};
use berth_guest::slots::{self, Slot};
use berth_guest::{auth, store};
use spin_sdk::wasip3::http::types::{Method, Request, Scheme};

/// The header the host (like Spin) sets to the client's address.
use berth_guest::store::CLIENT_ADDR;

pub enum Caller {
    Anonymous,
    /// A Bearer token from the token endpoint: its access list was decided
    /// when it was issued.
    Token(RegistryClaims),
    /// Basic credentials, checked on this request.
    User(Principal),
    /// Credentials were given but are not valid.
    Invalid(&'static str),
    /// The store could not be read to check them.
    Fault(OciError),
    /// Valid credentials from an address the tenant's endpoint policy does
    /// not let in (`berth_domain::network`), or a console session's change
    /// without its CSRF token.
    Denied(String),
}

impl Caller {
    /// Who the request's credentials name, held to their tenant's endpoint
    /// policy.
    pub async fn of(req: &Request) -> Caller {
        let headers = req.get_headers();
        let caller = Self::identify(req, &headers).await;
        let tenant = match &caller {
            Caller::Token(c) if !c.tenant.is_empty() => &c.tenant,
            Caller::User(p) => &p.tenant,
            _ => return caller,
        };
        match auth::network_allows(tenant, &headers).await {
            Ok(Ok(())) => caller,
            Ok(Err(message)) => Caller::Denied(message),
            Err(e) => Caller::Fault(e),
        }
    }

    async fn identify(req: &Request, headers: &spin_sdk::wasip3::http::types::Fields) -> Caller {
        let Some(value) = header(headers, "authorization") else {
            return Self::of_session(headers, &req.get_method()).await;
        };
        if let Some(token) = value.strip_prefix("Bearer ") {
            return match store::credentials::verify_token(token.trim())
                .and_then(|c| serde_json::from_str::<RegistryClaims>(&c).ok())
            {
                // A token names its user (and key); one disabled, deleted
                // or re-created since is refused (checked every few
                // seconds, see token_holder_active).
                Some(c) if c.kind == "registry" && !c.tenant.is_empty() => {
                    match auth::token_holder_active(&c).await {
                        Ok(true) => Caller::Token(c),
                        Ok(false) => {
                            Caller::Invalid("the token's user or access key is disabled or gone")
                        }
                        Err(e) => Caller::Fault(e),
                    }
                }
                Some(c) if c.kind == "registry" => Caller::Token(c),
                _ => Caller::Invalid("invalid or expired token"),
            };
        }
        match docker::parse_basic(&value) {
            // A password is checked only from an address its tenant lets in.
            Some((user, password)) => match auth::login_allowed(&user, headers).await {
                Ok(true) => match auth::login(&user, &password).await {
                    Ok(Some(p)) => Caller::User(p),
                    Ok(None) => Caller::Invalid("invalid username or password"),
                    Err(e) => Caller::Fault(e),
                },
                // Told apart from a wrong password by nothing.
                Ok(false) => Caller::Invalid("invalid username or password"),
                Err(e) => Caller::Fault(e),
            },
            None => Caller::Invalid("unsupported Authorization scheme"),
        }
    }

    /// A console session's user (`berth_guest::session`), or anonymous
    /// without a session cookie.
    async fn of_session(
        headers: &spin_sdk::wasip3::http::types::Fields,
        method: &Method,
    ) -> Caller {
        use berth_guest::session::{self, Refusal};
        let cookie = joined(headers, "cookie", "; ");
        if cookie.is_empty() {
            return Caller::Anonymous;
        }
        let csrf = header(headers, berth_domain::console::CSRF_HEADER);
        let method = berth_guest::manage::method_name(method);
        match session::principal(Some(&cookie), method, csrf.as_deref()).await {
            Ok(Some(p)) => Caller::User(p),
            Ok(None) => Caller::Anonymous,
            Err(Refusal::Invalid(m)) => Caller::Invalid(m),
            Err(r @ Refusal::Csrf) => Caller::Denied(r.message()),
            Err(Refusal::Fault(e)) => Caller::Fault(e),
        }
    }

    pub fn who(&self) -> Option<(String, String)> {
        match self {
            // A token issued without credentials names nobody.
            Caller::Token(c) if c.tenant.is_empty() => None,
            Caller::Token(c) => Some((c.tenant.clone(), c.sub.clone())),
            Caller::User(p) => Some((p.tenant.clone(), p.user.clone())),
            _ => None,
        }
    }

    /// Whether the caller holds docker `action` on `repo`. A token's grant
    /// counts only while what it was decided on still holds (the
    /// organization's owner, the repository's visibility, the share).
    async fn holds(&self, repo: &str, action: &'static str) -> Result<bool, OciError> {
        match self {
            Caller::Token(c) => match c.allows(repo, action) {
                Some(basis) => auth::basis_holds(&c.tenant, repo, basis).await,
                None => Ok(false),
            },
            Caller::User(p) => Ok(!auth::docker_actions(Some(p), repo, &[action])
                .await?
                .is_empty()),
            Caller::Anonymous => Ok(!auth::docker_actions(None, repo, &[action])
                .await?
                .is_empty()),
            Caller::Invalid(_) | Caller::Fault(_) | Caller::Denied(_) => Ok(false),
        }
    }
}

/// What the router does with an allowed request.
pub struct Check {
    /// A new path and query to forward (mount or catalog rewritten).
    pub rewrite: Option<String>,
    /// The operation to audit once answered.
    pub audit: Option<String>,
}

fn realm(req: &Request) -> String {
    if let Some(r) = store::config::get("auth_realm").filter(|r| !r.is_empty()) {
        return r;
    }
    let scheme = match req.get_scheme() {
        Some(Scheme::Https) => "https",
        _ => "http",
    };
    let host = req
        .get_headers()
        .get("host")
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
        .or_else(|| req.get_authority())
        .unwrap_or_else(|| "localhost".into());
    format!("{scheme}://{host}/service/token")
}

pub fn service() -> String {
    store::config::get("auth_service").unwrap_or_else(|| "berth".into())
}

/// 401 with the challenge that sends docker clients to the token endpoint.
fn challenge(req: &Request, scope: Option<&str>, message: &str, insufficient: bool) -> Reply {
    let mut header = docker::challenge(&realm(req), &service(), scope);
    if insufficient {
        header.push_str(r#",error="insufficient_scope""#);
    }
    Reply::error(&OciError::new(ErrorCode::Unauthorized, message))
        .header("www-authenticate", header)
}

fn denied(message: String) -> Reply {
    Reply::error(&OciError::new(ErrorCode::Denied, message))
}

fn refuse(caller: &Caller, req: &Request, scope: &str, what: String) -> Reply {
    match caller {
        Caller::Anonymous => challenge(req, Some(scope), "authentication required", false),
        Caller::Invalid(m) => challenge(req, Some(scope), m, false),
        Caller::Token(_) => challenge(req, Some(scope), &what, true),
        Caller::User(_) => denied(what),
        Caller::Fault(e) => Reply::error(e),
        Caller::Denied(m) => denied(m.clone()),
    }
}

pub async fn check(
    caller: &Caller,
    route: &Route<'_>,
    method: &Method,
    query: &str,
    req: &Request,
) -> Result<Check, Reply> {
    match caller {
        Caller::Fault(e) => return Err(Reply::error(e)),
        Caller::Denied(m) => return Err(denied(m.clone())),
        _ => {}
    }
    let name = match route {
        Route::Base => {
            return match caller {
                Caller::Anonymous => Err(challenge(req, None, "authentication required", false)),
                Caller::Invalid(m) => Err(challenge(req, None, m, false)),
                _ => Ok(crate::Check::allowed()),
            };
        }
        Route::Catalog => {
            // `listings` gets the caller and lists what it may pull.
            return match caller.who() {
                Some(_) => Ok(Check::allowed()),
                None => Err(refuse(caller, req, "registry:catalog:*", String::new())),
            };
        }
        Route::Tags { name }
        | Route::Manifest { name, .. }
        | Route::Blob { name, .. }
        | Route::UploadStart { name }
        | Route::Upload { name, .. }
        | Route::Referrers { name, .. } => *name,
    };
    let action = match method {
        Method::Get | Method::Head => "pull",
        Method::Delete => "delete",
        _ => "push",
    };
    let holds = caller
        .holds(name, action)
        .await
        .map_err(|e| Reply::error(&e))?;
    if !holds {
        // A mount's challenge names its source too.
        let mount_from = match (route, method) {
            (Route::UploadStart { .. }, Method::Post) => {
                let pairs = route::query_pairs(query);
                route::query_get(&pairs, "mount")
                    .and(route::query_get(&pairs, "from"))
                    .map(str::to_string)
            }
            _ => None,
        };
        return Err(refuse(
            caller,
            req,
            &docker::challenge_scope(name, action, mount_from.as_deref()),
            format!("requested access to {name} ({action}) is denied"),
        ));
    }
    let mut check = Check {
        rewrite: None,
        audit: None,
    };
    let pairs = route::query_pairs(query);
    match (route, method) {
        (Route::Manifest { reference, .. }, Method::Put) => {
            ensure_namespace(caller, name).await?;
            check.audit = Some(format!("push manifest {name}:{reference}"));
        }
        (Route::Manifest { reference, .. }, Method::Delete) => {
            check.audit = Some(format!("delete manifest {name}:{reference}"));
        }
        (Route::Blob { digest, .. }, Method::Delete) => {
            check.audit = Some(format!("delete blob {name}@{digest}"));
        }
        (Route::Upload { .. }, Method::Put) => {
            // The organization may have been deleted since the upload
            // began: the blob is linked only under one the caller's tenant
            // owns (re-created for it if gone), never under no owner.
            ensure_namespace(caller, name).await?;
            let digest = route::query_get(&pairs, "digest").unwrap_or_default();
            check.audit = Some(format!("push blob {name}@{digest}"));
        }
        (Route::UploadStart { .. }, Method::Post) => {
            ensure_namespace(caller, name).await?;
            if let Some(digest) = route::query_get(&pairs, "digest") {
                check.audit = Some(format!("push blob {name}@{digest}"));
            }
            if let Some(digest) = route::query_get(&pairs, "mount") {
                // Mount only from a repository the caller may read; without
                // `from` (automatic mount) the blob could belong to another
                // tenant, so the request becomes a plain upload.
                let from = route::query_get(&pairs, "from");
                let readable = match from {
                    Some(f) => caller
                        .holds(f, "pull")
                        .await
                        .map_err(|e| Reply::error(&e))?,
                    None => false,
                };
                if readable {
                    check.audit = Some(format!(
                        "mount blob {name}@{digest} from {}",
                        from.unwrap_or_default()
                    ));
                } else {
                    let kept: Vec<String> = pairs
                        .iter()
                        .filter(|(k, _)| k != "mount" && k != "from")
                        .map(|(k, v)| {
                            format!("{}={}", route::percent_encode(k), route::percent_encode(v))
                        })
                        .collect();
                    let path = format!("/v2/{name}/blobs/uploads/");
                    check.rewrite = Some(if kept.is_empty() {
                        path
                    } else {
                        format!("{path}?{}", kept.join("&"))
                    });
                }
            }
        }
        _ => {}
    }
    Ok(check)
}

/// A push into an organization that does not exist yet creates it for the
/// caller's tenant (the token was only granted push if the caller may
/// create organizations); one that another tenant owns is refused.
async fn ensure_namespace(caller: &Caller, repo: &str) -> Result<(), Reply> {
    let ns = auth::namespace_of(repo);
    let existing = store::get_json::<Namespace>(&records::namespace(ns))
        .await
        .map_err(|e| Reply::error(&e))?;
    let Some((tenant, user)) = caller.who() else {
        return Err(denied("authentication required".into()));
    };
    match existing {
        Some(n) if n.tenant == tenant => Ok(()),
        Some(_) => Err(denied(format!(
            "organization {ns} belongs to another tenant"
        ))),
        None => {
            let who = match caller {
                Caller::User(p) => p.clone(),
                _ => auth::principal(&tenant, &user)
                    .await
                    .map_err(|e| Reply::error(&e))?
                    .ok_or_else(|| denied("the token's user no longer exists".into()))?,
            };
            let resource = iam::action::namespace_resource(ns);
            let facts = iam::Facts::default();
            if !iam::decide(Some(&who), Action::CreateNamespace, &resource, &facts) {
                return Err(denied(format!(
                    "organization {ns} does not exist and you may not create it"
                )));
            }
            match namespaces::create(&who, ns).await {
                Ok(_) => Ok(()),
                // Created meanwhile: by the caller's tenant, or refused.
                Err(CreateError::Exists) => {
                    let now = store::get_json::<Namespace>(&records::namespace(ns))
                        .await
                        .map_err(|e| Reply::error(&e))?;
                    match now {
                        Some(n) if n.tenant == tenant => Ok(()),
                        _ => Err(denied(format!(
                            "organization {ns} belongs to another tenant"
                        ))),
                    }
                }
                Err(CreateError::Held(left)) => Err(denied(format!(
                    "organization {ns} was deleted by its owner moments ago; the name is free in {left} s"
                ))),
                Err(CreateError::InvalidName) => Err(Reply::error(&OciError::new(
                    ErrorCode::NameInvalid,
                    format!("{ns:?} is not a valid organization name"),
                ))),
                Err(CreateError::Quota(q)) => Err(denied(format!(
                    "organization {ns} does not exist and you have created {q}, the most allowed"
                ))),
                Err(CreateError::Store(e)) => Err(Reply::error(&OciError::internal(e))),
            }
        }
    }
}

/// Records a push or delete (who, tenant, what, answer, from where).
pub async fn audit(caller: &Caller, operation: &str, status: u16, source: String) {
    let Some((tenant, user)) = caller.who() else {
        return;
    };
    let resource = operation.split_whitespace().nth(2).unwrap_or_default();
    berth_guest::manage::audit(
        &tenant,
        user,
        operation.to_string(),
        resource.to_string(),
        status,
        source,
    )
    .await;
}

/// One of the caller's tenant's upload slots for an upload request that
/// carries layer bytes (`berth_domain::admission`): `None` when it carries
/// none, names no tenant, or no limit is set; 429 `TOOMANYREQUESTS` with
/// `Retry-After` while every slot is held.
pub async fn upload_slot(caller: &Caller, req: &Request) -> Result<Option<Slot>, Reply> {
    let headers = req.get_headers();
    let header = |name: &str| header(&headers, name);
    let method = berth_guest::manage::method_name(&req.get_method());
    if !admission::carries_bytes(method, header("content-length").as_deref()) {
        return Ok(None);
    }
    let Some((tenant, _)) = caller.who() else {
        return Ok(None);
    };
    let limit = admission::limit(store::config::get(admission::SETTING).as_deref());
    if limit == 0 {
        return Ok(None);
    }
    match slots::take(
        &admission::upload_slots(&tenant),
        limit,
        admission::SLOT_TTL_SECONDS,
    )
    .await
    {
        Ok(Some(slot)) => Ok(Some(slot)),
        Ok(None) => Err(Reply::error(&OciError::new(
            ErrorCode::Toomanyrequests,
            format!(
                "tenant {tenant} has {limit} layer uploads under way, the most allowed at once"
            ),
        ))
        .header("retry-after", admission::RETRY_AFTER_SECONDS.to_string())),
        Err(e) => Err(Reply::error(&OciError::internal(format!(
            "storage failure: {e:?}"
        )))),
    }
}

/// The client's address, as the host (like Spin) reports it.
pub fn client_addr(req: &Request) -> String {
    header(&req.get_headers(), CLIENT_ADDR).unwrap_or_default()
}

/// Every line of a request header, joined with `sep` (an HTTP/2 client
/// may split `Cookie`; proxies may add `X-Forwarded-For` lines).
fn joined(headers: &spin_sdk::wasip3::http::types::Fields, name: &str, sep: &str) -> String {
    headers
        .get(name)
        .into_iter()
        .filter_map(|v| String::from_utf8(v).ok())
        .collect::<Vec<_>>()
        .join(sep)
}

/// A request header's first value, as text.
fn header(headers: &spin_sdk::wasip3::http::types::Fields, name: &str) -> Option<String> {
    headers
        .get(name)
        .into_iter()
        .next()
        .and_then(|v| String::from_utf8(v).ok())
}
