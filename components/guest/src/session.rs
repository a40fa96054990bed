//! Console sessions (`berth_domain::console`): made at sign-in, and taken
//! as a user's credentials by `/v2/`, the SWR APIs and the admin API when a
//! request carries the session cookie and no `Authorization`.

use crate::{auth, store};
use berth_domain::OciError;
use berth_domain::console::{self, Session};
use berth_domain::iam::Principal;
use berth_domain::iam::records::{self, User};
use berth_domain::iam::signing::constant_time_eq;

/// Why a session cookie was not taken.
#[derive(Debug)]
pub enum Refusal {
    /// Unknown, expired or signed out, or its user is gone or disabled.
    Invalid(&'static str),
    /// A change without the session's CSRF token.
    Csrf,
    Fault(OciError),
}

impl Refusal {
    pub fn message(&self) -> String {
        match self {
            Refusal::Invalid(m) => m.to_string(),
            Refusal::Csrf => format!(
                "a change made with the console's session needs its CSRF token in {}",
                console::CSRF_HEADER
            ),
            Refusal::Fault(e) => e.message.clone(),
        }
    }
}

fn random_hex() -> String {
    let bytes = spin_sdk::wasip3::random::random::get_random_bytes(console::SECRET_BYTES as u64);
    auth::hex_encode(&bytes)
}

/// Signs `p` in: the session's cookie id and the session (its CSRF token).
/// `login_key`: signed in with a docker login key, whose access key
/// (`p.access_key`) ends the session with it, as does `until` (a temporary
/// key's expiry) if that is sooner; `password_hash`: the user's stored
/// hash for a password sign-in, whose change ends the session.
pub async fn create(
    p: &Principal,
    login_key: bool,
    password_hash: Option<&str>,
    until: Option<u64>,
) -> Result<(String, Session), OciError> {
    let now = store::now();
    let lifetime = console::lifetime(store::config::get(console::LIFETIME_SETTING).as_deref());
    let id = random_hex();
    let session = Session {
        tenant: p.tenant.clone(),
        user: p.user.clone(),
        user_id: p.user_id.clone(),
        login_key,
        access_key: p.access_key.clone().filter(|_| login_key),
        credential: password_hash.map(console::credential).unwrap_or_default(),
        csrf: random_hex(),
        created: now,
        expires: until.map_or(now + lifetime, |u| u.min(now + lifetime)),
    };
    store::commit(vec![store::WriteOp::Put((
        console::key(&id),
        serde_json::to_vec(&session).expect("sessions serialize"),
        store::Precondition::Absent,
    ))])
    .await
    .map_err(store::fault)?;
    Ok((id, session))
}

/// Ends the session with cookie id `id` (nothing if there is none).
pub async fn end(id: &str) -> Result<(), OciError> {
    store::commit(vec![store::delete(console::key(id))])
        .await
        .map_err(store::fault)?;
    Ok(())
}

/// The live session with cookie id `id`.
pub async fn find(id: &str) -> Result<Option<Session>, OciError> {
    let Some(s) = store::get_json::<Session>(&console::key(id)).await? else {
        return Ok(None);
    };
    Ok((!s.expired(store::now())).then_some(s))
}

/// The user a request's session cookie (in `cookie`, the `Cookie` header)
/// names, for a request with `method` and `csrf` (its CSRF header): `None`
/// without a session cookie.
pub async fn principal(
    cookie: Option<&str>,
    method: &str,
    csrf: Option<&str>,
) -> Result<Option<Principal>, Refusal> {
    Ok(resolve(cookie, method, csrf).await?.map(|(p, _)| p))
}

/// [`principal`], with the session it rests on.
pub async fn resolve(
    cookie: Option<&str>,
    method: &str,
    csrf: Option<&str>,
) -> Result<Option<(Principal, Session)>, Refusal> {
    let Some(id) = cookie.and_then(console::cookie_id) else {
        return Ok(None);
    };
    let session = find(id)
        .await
        .map_err(Refusal::Fault)?
        .ok_or(Refusal::Invalid(
            "the console session has expired or ended: sign in again",
        ))?;
    if console::needs_csrf(method)
        && !csrf.is_some_and(|c| constant_time_eq(c.as_bytes(), session.csrf.as_bytes()))
    {
        return Err(Refusal::Csrf);
    }
    if let Some(ak) = &session.access_key
        && !auth::key_still_active(ak).await.map_err(Refusal::Fault)?
    {
        return Err(Refusal::Invalid(
            "the session's access key is disabled or gone",
        ));
    }
    let gone = Refusal::Invalid("the session's user is disabled or gone");
    let user = store::get_json::<User>(&records::user(&session.tenant, &session.user))
        .await
        .map_err(Refusal::Fault)?
        .filter(|u| u.id == session.user_id)
        .ok_or(gone)?;
    // A password changed since signing in ends the session.
    if !session.credential.is_empty()
        && user.password.as_deref().map(console::credential).as_deref()
            != Some(session.credential.as_str())
    {
        return Err(Refusal::Invalid(
            "the password changed since this session began: sign in again",
        ));
    }
    let p = auth::principal_of(user)
        .await
        .map_err(Refusal::Fault)?
        .ok_or(Refusal::Invalid("the session's user is disabled or gone"))?;
    // A login-key session always carries an access key (empty when the
    // login key had none behind it): that keeps it out of user, key and
    // network administration, and what it asks for stays bound to the key.
    let access_key = match &session.access_key {
        Some(k) => Some(k.clone()),
        None if session.login_key => Some(String::new()),
        None => None,
    };
    Ok(Some((Principal { access_key, ..p }, session)))
}

/// [`principal`] for a request read into an [`Incoming`](crate::http::Incoming)
/// that has no `Authorization`.
pub async fn of_request(req: &crate::http::Incoming) -> Result<Option<Principal>, Refusal> {
    if req.header("authorization").is_some() {
        return Ok(None);
    }
    principal(
        Some(&req.headers_all("cookie").join("; ")),
        crate::manage::method_name(&req.method),
        req.header(console::CSRF_HEADER).as_deref(),
    )
    .await
}
