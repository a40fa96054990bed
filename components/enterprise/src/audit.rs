//! The instance's audit log: SWR enterprise `ListAuditLogs`
//! (`GET /v2/{project_id}/instances/{instance_id}/audit-logs?operation=&offset=&limit=`,
//! huaweicloudsdkswr `ListAuditLogsRequest`/`ListAuditLogsResponse`),
//! newest first, for the tenant's administrators. Read only: the log has
//! no operation that edits or deletes a record.

use crate::Call;
use berth_domain::audit::{self, Query};
use berth_domain::iam::admin;
use berth_domain::swr::SwrError;
use berth_guest::audit::MAX_SKIP;
use berth_guest::http::Reply;
use berth_guest::manage::{fault, ok_json};

/// `{"audit_logs": [AuditLog], "total"}`; `operation` is `create`,
/// `update`, `delete` or `pull` (the SDK documents `pull`, `delete`,
/// `create`); `offset` a multiple of `limit` (at most 100), as SWR checks.
pub async fn list(call: &Call<'_>) -> Result<Reply, SwrError> {
    if !admin::may_administer(&call.who, &call.tenant.name) {
        return Err(SwrError::forbidden(
            "only the tenant's administrators read its audit log",
        ));
    }
    let (offset, limit) = crate::webhooks::page(call)?;
    if offset > MAX_SKIP {
        return Err(SwrError::bad_request(format!(
            "offset may be at most {MAX_SKIP}; narrow the query by operation"
        )));
    }
    let query = Query::parse(|k| {
        if k == "operation" {
            call.req.query(k)
        } else {
            None
        }
    })?;
    let page = berth_guest::audit::newest(&call.tenant.name, &query, None, offset, limit)
        .await
        .map_err(fault)?;
    let logs: Vec<_> = page
        .events
        .iter()
        .map(|(key, e)| audit::swr_view(key, e))
        .collect();
    ok_json(
        200,
        &serde_json::json!({ "audit_logs": logs, "total": page.total }),
    )
}
