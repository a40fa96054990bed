//! SWR's enterprise-edition API under `/v2/<project_id>/instances/...`,
//! handed over by the registry router (it shares `/v2/`). Berth presents
//! each tenant as one instance, whose id is the tenant's project id; its
//! webhook policies are [`webhooks`], its immutable-tag rules
//! [`immutable`], its retention policies [`retention`], its garbage
//! collection [`gc`], the registries it replicates with [`registries`] and its replication
//! policies [`replication`], its audit log [`audit`], its network access control
//! [`endpoint_policy`]. Calls are AK/SK-signed as for the
//! shared edition (`berth_guest::manage::authenticate`), errors are SWR's
//! JSON, and every change is audited.

mod audit;
mod endpoint_policy;
mod gc;
mod immutable;
mod registries;
mod replication;
mod retention;
mod webhooks;

use berth_domain::iam::Principal;
use berth_domain::iam::records::{self, Tenant};
use berth_domain::swr::{SwrError, rfc3339};
use berth_guest::http::{Incoming, Reply};
use berth_guest::manage::{self, method_name, oci_fault, ok_json};
use berth_guest::store;
use spin_sdk::wasip3::http::types::{ErrorCode, Method, Request, Response};

berth_guest::world_bindings!("berth:registry/enterprise-endpoint");

/// Management bodies are small JSON documents.
const MAX_BODY: u64 = 1 << 20;

impl exports::berth::registry::enterprise_api::Guest for Endpoint {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let authority = request.get_authority();
        let req = Incoming::new(request);
        let reply = match serve(&req, authority.as_deref()).await {
            Ok(r) => r,
            Err(e) => Reply::json(e.status, e.body()),
        };
        Ok(reply.into_response(req))
    }
}

/// The caller, its tenant, and the request's body.
pub(crate) struct Call<'a> {
    pub req: &'a Incoming,
    pub who: Principal,
    pub tenant: Tenant,
    pub body: Vec<u8>,
    /// A console session signed in with a docker login key.
    pub login_key_session: bool,
}

async fn serve(req: &Incoming, authority: Option<&str>) -> Result<Reply, SwrError> {
    let body = req.body_bytes(MAX_BODY).await.map_err(|e| {
        SwrError::bad_request(if e.status() == 413 {
            format!("request bodies are limited to {MAX_BODY} bytes")
        } else {
            e.message
        })
    })?;
    let mutating = !matches!(req.method, Method::Get | Method::Head);
    let (who, login_key_session) = match manage::session_principal(req).await? {
        Some(p) => {
            let key = p.access_key.is_some();
            (p, key)
        }
        None => (
            manage::authenticate(req, authority, &body, mutating)
                .await?
                .0,
            false,
        ),
    };
    let tenant = store::get_json::<Tenant>(&records::tenant(&who.tenant))
        .await
        .map_err(oci_fault)?
        .ok_or_else(|| SwrError::unauthorized("the caller's tenant is gone"))?;
    let segs: Vec<String> = req
        .path
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(berth_domain::route::percent_decode)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    // `/v2/<project_id>/instances/...`
    let [_, project, _, rest @ ..] = segs.as_slice() else {
        return Err(SwrError::not_found("no such API"));
    };
    if *project != tenant.project_id {
        return Err(SwrError::forbidden(format!(
            "project {project} is not the access key's project"
        )));
    }
    let call = Call {
        req,
        who,
        tenant,
        body,
        login_key_session,
    };
    let result = route(&call, rest, authority).await;
    if mutating && let Ok(r) = &result {
        manage::audit(
            &call.who.tenant,
            call.who.user.clone(),
            format!("{} {}", method_name(&req.method), req.path),
            berth_domain::audit::resource_of(method_name(&req.method), &req.path, &call.body),
            r.status,
            req.header(store::CLIENT_ADDR).unwrap_or_default(),
        )
        .await;
    }
    result
}

async fn route(call: &Call<'_>, rest: &[&str], authority: Option<&str>) -> Result<Reply, SwrError> {
    let m = &call.req.method;
    let instance = |id: &str| -> Result<(), SwrError> {
        if id == call.tenant.project_id {
            Ok(())
        } else {
            Err(SwrError::not_found(format!("instance {id} not found")))
        }
    };
    match rest {
        [] => match m {
            Method::Get => ok_json(
                200,
                &serde_json::json!({
                    "instances": [instance_view(&call.tenant, authority)],
                    "total": 1,
                }),
            ),
            _ => Err(SwrError::method_not_allowed()),
        },
        [id] => {
            instance(id)?;
            match m {
                Method::Get => ok_json(200, &instance_view(&call.tenant, authority)),
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "webhook", "policies"] => {
            instance(id)?;
            match m {
                Method::Get => webhooks::list(call).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "namespaces", ns, "webhook", "policies"] => {
            instance(id)?;
            match m {
                Method::Post => webhooks::create(call, ns).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "namespaces", ns, "webhook", "policies", policy] => {
            instance(id)?;
            let policy = policy_id(policy)?;
            match m {
                Method::Get => webhooks::show(call, ns, policy).await,
                Method::Put => webhooks::update(call, ns, policy).await,
                Method::Delete => webhooks::delete(call, ns, policy).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "audit-logs"] => {
            instance(id)?;
            match m {
                Method::Get => audit::list(call).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "endpoint-policy"] => {
            instance(id)?;
            match m {
                Method::Get => endpoint_policy::show(call).await,
                Method::Put => endpoint_policy::update(call).await,
                Method::Post => endpoint_policy::enable(call).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "immutabletagrules"] => {
            instance(id)?;
            match m {
                Method::Get => immutable::list(call).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "namespaces", ns, "immutabletagrules"] => {
            instance(id)?;
            match m {
                Method::Post => immutable::create(call, ns).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "namespaces", ns, "immutabletagrules", rule] => {
            instance(id)?;
            let rule = policy_id(rule)?;
            match m {
                Method::Put => immutable::update(call, ns, rule).await,
                Method::Delete => immutable::delete(call, ns, rule).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "retention", "policies"] => {
            instance(id)?;
            match m {
                Method::Get => retention::list(call).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "namespaces", ns, "retention", "policies"] => {
            instance(id)?;
            match m {
                Method::Post => retention::create(call, ns).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "namespaces", ns, "retention", "policies", policy] => {
            instance(id)?;
            let policy = policy_id(policy)?;
            match m {
                Method::Get => retention::show(call, ns, policy).await,
                Method::Put => retention::update(call, ns, policy).await,
                Method::Delete => retention::delete(call, ns, policy).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [
            id,
            "namespaces",
            ns,
            "retention",
            "policies",
            policy,
            "executions",
        ] => {
            instance(id)?;
            let policy = policy_id(policy)?;
            match m {
                Method::Post => retention::execute(call, ns, policy).await,
                Method::Get => retention::executions(call, ns, policy).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [
            id,
            "namespaces",
            ns,
            "retention",
            "policies",
            policy,
            "executions",
            execution,
            "tasks",
        ] => {
            instance(id)?;
            let (policy, execution) = (policy_id(policy)?, policy_id(execution)?);
            match m {
                Method::Get => retention::tasks(call, ns, policy, execution).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [
            id,
            "namespaces",
            ns,
            "retention",
            "policies",
            policy,
            "executions",
            execution,
            "tasks",
            task,
            "subtasks",
        ] => {
            instance(id)?;
            let (policy, execution, task) =
                (policy_id(policy)?, policy_id(execution)?, policy_id(task)?);
            match m {
                Method::Get => retention::subtasks(call, ns, policy, execution, task).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "registries"] => {
            instance(id)?;
            match m {
                Method::Post => registries::create(call).await,
                Method::Get => registries::list(call).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "registries", registry] => {
            instance(id)?;
            let registry = policy_id(registry)?;
            match m {
                Method::Get => registries::show(call, registry).await,
                Method::Put => registries::update(call, registry).await,
                Method::Delete => registries::delete(call, registry).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "replication", "policies"] => {
            instance(id)?;
            match m {
                Method::Post => replication::create(call).await,
                Method::Get => replication::list(call).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "replication", "policies", policy] => {
            instance(id)?;
            let policy = policy_id(policy)?;
            match m {
                Method::Get => replication::show(call, policy).await,
                Method::Put => replication::update(call, policy).await,
                Method::Delete => replication::delete(call, policy).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "replication", "executions"] => {
            instance(id)?;
            match m {
                Method::Post => replication::execute(call).await,
                Method::Get => replication::executions(call).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "replication", "executions", execution] => {
            instance(id)?;
            let execution = policy_id(execution)?;
            match m {
                Method::Put => replication::stop(call, execution).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "replication", "executions", execution, "tasks"] => {
            instance(id)?;
            let execution = policy_id(execution)?;
            match m {
                Method::Get => replication::tasks(call, execution).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [
            id,
            "replication",
            "executions",
            execution,
            "tasks",
            task,
            "subtasks",
        ] => {
            instance(id)?;
            let (execution, task) = (policy_id(execution)?, policy_id(task)?);
            match m {
                Method::Get => replication::subtasks(call, execution, task).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "system", "gc"] => {
            instance(id)?;
            match m {
                Method::Get => gc::list(call).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "system", "gc", "schedule"] => {
            instance(id)?;
            match m {
                Method::Post => gc::execute(call).await,
                Method::Put => gc::update_schedule(call).await,
                Method::Get => gc::show_schedule(call).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "system", "gc", task] => {
            instance(id)?;
            let task = policy_id(task)?;
            match m {
                Method::Get => gc::show(call, task).await,
                Method::Put => gc::stop(call, task).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        [id, "namespaces", ns, "webhook", "policies", policy, "jobs"] => {
            instance(id)?;
            let policy = policy_id(policy)?;
            match m {
                Method::Get => webhooks::jobs(call, ns, policy).await,
                _ => Err(SwrError::method_not_allowed()),
            }
        }
        _ => Err(SwrError::not_found(format!(
            "no enterprise operation {} {}",
            method_name(m),
            call.req.path
        ))),
    }
}

/// `check` of organization `ns` (the caller may manage it: its id), asked
/// once per organization over a listing of many policies (`seen` keeps
/// the answers).
pub(crate) async fn checked_once(
    seen: &mut std::collections::HashMap<String, Option<u64>>,
    ns: &str,
    check: impl AsyncFnOnce(&str) -> Option<u64>,
) -> Option<u64> {
    if let Some(answer) = seen.get(ns) {
        return *answer;
    }
    let answer = check(ns).await;
    seen.insert(ns.to_string(), answer);
    answer
}

fn policy_id(s: &str) -> Result<u64, SwrError> {
    s.parse()
        .map_err(|_| SwrError::bad_request(format!("id {s:?} is not a number")))
}

/// The SDK's `Instance`: the tenant, as an always-running instance.
fn instance_view(t: &Tenant, authority: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "id": t.project_id,
        "name": t.name,
        "description": format!("Berth registry of tenant {}", t.name),
        "spec": "berth",
        "version": env!("CARGO_PKG_VERSION"),
        "charge_mode": "postPaid",
        "access_address": authority.unwrap_or_default(),
        "status": "Running",
        "created_at": rfc3339(t.created),
        "updated_at": rfc3339(t.created),
        "project_id": t.project_id,
        "enterprise_project_id": "0",
        "user_def_obs": false,
        "vpc_id": "", "subnet_id": "", "expires_at": "", "obs_bucket_name": "",
        "product_id": "", "order_id": "", "vpc_name": "", "vpc_cidr": "",
        "subnet_name": "", "subnet_cidr": "", "vpcep_service_id": "",
    })
}
