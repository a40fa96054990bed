//! What the management API's resource groups share: the caller handed over
//! by the `manage` router, SWR-format answers, and the export glue
//! ([`crate::manage_endpoint!`]).

use crate::http::Reply;
use berth_domain::OciError;
use berth_domain::iam::{PolicyDocument, Principal};
use berth_domain::swr::SwrError;
use serde::Serialize;

/// The principal the router authenticated (policies arrive as JSON).
pub fn principal(
    tenant: String,
    user: String,
    user_id: String,
    admin: bool,
    policies: &[String],
    access_key: Option<String>,
) -> Principal {
    Principal {
        tenant,
        user,
        user_id,
        admin,
        policies: policies
            .iter()
            .filter_map(|p| serde_json::from_str::<PolicyDocument>(p).ok())
            .collect(),
        access_key,
    }
}

pub fn fault(e: impl std::fmt::Debug) -> SwrError {
    SwrError::internal(format!("storage failure: {e:?}"))
}

pub fn oci_fault(e: OciError) -> SwrError {
    SwrError::internal(e.message)
}

pub fn ok_json<T: Serialize>(status: u16, v: &T) -> Result<Reply, SwrError> {
    Ok(Reply::json(
        status,
        serde_json::to_vec(v).expect("responses serialize"),
    ))
}

pub fn error_reply(e: &SwrError) -> Reply {
    Reply::json(e.status, e.body())
}

pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, SwrError> {
    serde_json::from_slice(body).map_err(|e| SwrError::bad_request(format!("invalid body: {e}")))
}

/// Generates a resource group's bindings and exports `serve(req, body, who)`
/// as its `handle`.
#[macro_export]
macro_rules! manage_endpoint {
    ($world:literal, $iface:ident, $serve:path) => {
        $crate::world_bindings!($world);

        impl exports::berth::registry::$iface::Guest for Endpoint {
            async fn handle(
                request: ::spin_sdk::wasip3::http::types::Request,
                body: Vec<u8>,
                caller: berth::registry::management_types::Caller,
            ) -> Result<
                ::spin_sdk::wasip3::http::types::Response,
                ::spin_sdk::wasip3::http::types::ErrorCode,
            > {
                let req = ::berth_guest::http::Incoming::new(request);
                let who = ::berth_guest::manage::principal(
                    caller.tenant,
                    caller.user,
                    caller.user_id,
                    caller.admin,
                    &caller.policies,
                    caller.access_key,
                );
                let reply = match $serve(&req, &body, &who).await {
                    Ok(r) => r,
                    Err(e) => ::berth_guest::manage::error_reply(&e),
                };
                Ok(reply.into_response(req))
            }
        }
    };
}

/// Read / edit / manage grants to users, on an organization or a
/// repository (SWR's `…/access` resources).
pub mod grants {
    use super::{fault, oci_fault, parse_body};
    use crate::store::{self, metadata};
    use berth_domain::iam::records::{self, Grant};
    use berth_domain::iam::{Level, Principal};
    use berth_domain::swr::SwrError;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    pub struct UserAuth {
        pub user_id: String,
        pub user_name: String,
        pub auth: u8,
    }

    impl UserAuth {
        pub fn of(who: &Principal, level: Option<Level>) -> UserAuth {
            UserAuth {
                user_id: who.user_id.clone(),
                user_name: who.user.clone(),
                auth: level.map(Level::code).unwrap_or(0),
            }
        }
    }

    /// Stores the grants in `body` (`[UserAuth]`) under `key(user id)`;
    /// with `update`, each must exist already. Users must be of the
    /// caller's tenant.
    pub async fn write(
        who: &Principal,
        body: &[u8],
        update: bool,
        key: impl Fn(&str) -> String,
    ) -> Result<(), SwrError> {
        let users: Vec<UserAuth> = parse_body(body)?;
        if users.is_empty() {
            return Err(SwrError::bad_request("no users given"));
        }
        let mut ops = Vec::new();
        for u in users {
            let level = Level::try_from(u.auth).map_err(SwrError::bad_request)?;
            let owner: Option<String> = store::get_json(&records::user_id(&u.user_id))
                .await
                .map_err(oci_fault)?;
            let name = match owner.as_deref().and_then(|o| o.split_once('/')) {
                Some((tenant, name)) if tenant == who.tenant => name.to_string(),
                _ => {
                    return Err(SwrError::bad_request(format!(
                        "no user with id {}",
                        u.user_id
                    )));
                }
            };
            let k = key(&u.user_id);
            if update && !store::exists(&k).await.map_err(oci_fault)? {
                return Err(SwrError::not_found(format!(
                    "user {} has no permission here to update",
                    u.user_id
                )));
            }
            ops.push(store::put_json(
                k,
                &Grant {
                    user_id: u.user_id,
                    user_name: name,
                    level,
                },
            ));
        }
        store::commit(ops).await.map_err(fault)?;
        Ok(())
    }

    /// Grants under `prefix`, except the caller's own.
    pub async fn others(who: &Principal, prefix: &str) -> Result<Vec<UserAuth>, SwrError> {
        let mut out = Vec::new();
        for e in metadata::scan(prefix.to_string(), None, 10_000)
            .await
            .map_err(fault)?
        {
            if let Ok(g) = serde_json::from_slice::<Grant>(&e.value)
                && g.user_id != who.user_id
            {
                out.push(UserAuth {
                    user_id: g.user_id,
                    user_name: g.user_name,
                    auth: g.level.code(),
                });
            }
        }
        Ok(out)
    }

    /// Removes the grants of the user ids in `body` (`[string]`).
    pub async fn delete(body: &[u8], key: impl Fn(&str) -> String) -> Result<(), SwrError> {
        let ids: Vec<String> = parse_body(body)?;
        let ops = ids.iter().map(|id| store::delete(key(id))).collect();
        store::commit(ops).await.map_err(fault)?;
        Ok(())
    }
}
