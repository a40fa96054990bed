//! Reads `spin.toml` (manifest version 2): HTTP triggers, components and
//! their variables. The local host gives these the meaning Spin gives them,
//! so `spin up` and `berth serve` run the same application.

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Raw {
    spin_manifest_version: u32,
    #[serde(default)]
    variables: BTreeMap<String, Variable>,
    #[serde(default)]
    trigger: Triggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize, Default)]
struct Triggers {
    #[serde(default)]
    http: Vec<HttpTrigger>,
    #[serde(default)]
    cron: Vec<CronTrigger>,
}

/// Spin's cron trigger: run `component` on `cron_expression`.
#[derive(Deserialize)]
struct CronTrigger {
    component: String,
    cron_expression: String,
    /// Berth's addition: also run as soon as new events are committed.
    #[serde(default)]
    wake_on_events: bool,
    /// Berth's addition: also run as soon as a commit appends under one
    /// of these metadata prefixes (a queue the job serves).
    #[serde(default)]
    wake_on_appends: Vec<String>,
}

#[derive(Deserialize)]
struct HttpTrigger {
    route: String,
    component: String,
}

#[derive(Deserialize)]
struct Variable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
}

#[derive(Deserialize)]
struct RawComponent {
    source: String,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    /// Import name → component that provides it (Spin's component dependencies).
    #[serde(default)]
    dependencies: BTreeMap<String, RawDependency>,
    /// URLs the component may send requests to (Spin's `scheme://host:port`
    /// patterns; none: no outbound requests).
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
}

#[derive(Deserialize)]
struct RawDependency {
    path: String,
}

/// One routable component, ready to instantiate.
pub struct Component {
    pub id: String,
    pub source: PathBuf,
    /// Imports satisfied by other components' exports, composed in at load.
    pub dependencies: Vec<(String, PathBuf)>,
    /// Config the component reads through `berth:store/config`.
    pub config: HashMap<String, String>,
    /// Where its outbound requests may go.
    pub allowed_outbound_hosts: crate::outbound::AllowedHosts,
}

pub struct Route {
    /// Path prefix (for `/...` wildcard routes) or exact path.
    pub path: String,
    pub wildcard: bool,
    pub component: String,
}

/// A component run on a schedule (`[[trigger.cron]]`): the host calls its
/// tick (`berth_domain::jobs::tick_path`) at each time of `schedule`.
pub struct Scheduled {
    pub component: String,
    pub expression: String,
    pub schedule: cron::Schedule,
    /// Run also soon after a commit appends under one of these prefixes
    /// (`event/` for the event consumers).
    pub wake_on: Vec<String>,
}

pub struct App {
    pub components: Vec<Component>,
    pub routes: Vec<Route>,
    pub schedules: Vec<Scheduled>,
}

impl App {
    /// Loads the manifest; `overrides` (from the command line) win over
    /// `SPIN_VARIABLE_<NAME>` environment variables, which win over defaults.
    pub fn load(path: &Path, overrides: &HashMap<String, String>) -> Result<App> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let raw: Raw =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if raw.spin_manifest_version != 2 {
            bail!("only spin_manifest_version = 2 is supported");
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut vars = HashMap::new();
        for (name, var) in &raw.variables {
            let env = std::env::var(format!("SPIN_VARIABLE_{}", name.to_uppercase())).ok();
            match overrides
                .get(name)
                .cloned()
                .or(env)
                .or_else(|| var.default.clone())
            {
                Some(v) => {
                    vars.insert(name.clone(), v);
                }
                None if var.required => bail!("variable {name} is required"),
                None => {}
            }
        }
        let mut components = Vec::new();
        for (id, c) in raw.component {
            let mut config = HashMap::new();
            for (k, template) in c.variables {
                config.insert(k, render(&template, &vars)?);
            }
            let dependencies = c
                .dependencies
                .into_iter()
                .map(|(name, d)| (name, base.join(d.path)))
                .collect();
            let hosts = c
                .allowed_outbound_hosts
                .iter()
                .map(|h| render(h, &vars))
                .collect::<Result<Vec<_>>>()?;
            let allowed_outbound_hosts = crate::outbound::AllowedHosts::parse(&hosts)
                .with_context(|| format!("component {id}"))?;
            components.push(Component {
                id,
                source: base.join(c.source),
                dependencies,
                config,
                allowed_outbound_hosts,
            });
        }
        let mut routes = Vec::new();
        for t in raw.trigger.http {
            if !components.iter().any(|c| c.id == t.component) {
                bail!("route {} names unknown component {}", t.route, t.component);
            }
            let (path, wildcard) = match t.route.strip_suffix("/...") {
                Some(p) => (p.to_string(), true),
                None => (t.route.clone(), false),
            };
            routes.push(Route {
                path,
                wildcard,
                component: t.component,
            });
        }
        // Most specific first, as Spin's router: longer paths, and an exact
        // route before a wildcard of the same path (`/v2` before `/v2/...`).
        routes.sort_by_key(|r| (std::cmp::Reverse(r.path.len()), r.wildcard));
        let mut app = App {
            components,
            routes,
            schedules: Vec::new(),
        };
        for t in raw.trigger.cron {
            let expression = render(&t.cron_expression, &vars)?;
            let schedule: cron::Schedule = expression.parse().with_context(|| {
                format!(
                    "cron trigger of {}: {expression:?} is not a cron expression (sec min hour day month weekday [year])",
                    t.component
                )
            })?;
            // The host runs a job through its tick route, as anyone would.
            let tick = berth_domain::jobs::tick_path(&t.component);
            if !berth_domain::jobs::is_valid_name(&t.component)
                || app.route(&tick) != Some(t.component.as_str())
            {
                bail!(
                    "cron trigger of {}: {tick} must be routed to it by a [[trigger.http]]",
                    t.component
                );
            }
            app.schedules.push(Scheduled {
                component: t.component,
                expression,
                schedule,
                wake_on: t
                    .wake_on_events
                    .then(|| berth_domain::events::PREFIX.to_string())
                    .into_iter()
                    .chain(t.wake_on_appends)
                    .collect(),
            });
        }
        Ok(app)
    }

    pub fn route(&self, path: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|r| {
                if r.wildcard {
                    path == r.path
                        || path
                            .strip_prefix(&r.path)
                            .is_some_and(|rest| rest.starts_with('/') || r.path.is_empty())
                } else {
                    path == r.path
                }
            })
            .map(|r| r.component.as_str())
    }
}

/// Expands `{{ name }}` references to application variables.
fn render(template: &str, vars: &HashMap<String, String>) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .context("unclosed {{ in a variable template")?
            + start;
        let name = rest[start + 2..end].trim();
        out.push_str(
            vars.get(name)
                .with_context(|| format!("unknown variable {name}"))?,
        );
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_routes_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spin.toml");
        std::fs::write(
            &p,
            r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
max = { default = "10" }
[[trigger.http]]
route = "/v2/..."
component = "registry"
[[trigger.http]]
route = "/v2"
component = "manage"
[[trigger.http]]
route = "/v2/manage/..."
component = "manage"
[component.manage]
source = "m.wasm"
[component.registry]
source = "r.wasm"
[component.registry.variables]
max_layer_bytes = "{{ max }}"
[component.registry.dependencies]
"berth:registry/blobs-api@0.1.0" = { path = "b.wasm" }
"#,
        )
        .unwrap();
        let app = App::load(&p, &HashMap::new()).unwrap();
        assert_eq!(app.route("/v2/"), Some("registry"));
        // The exact route wins over the wildcard of the same path, and the
        // longer prefix over the shorter.
        assert_eq!(app.route("/v2"), Some("manage"));
        assert_eq!(app.route("/v2/manage/namespaces"), Some("manage"));
        assert_eq!(app.route("/v2/manager/x/tags/list"), Some("registry"));
        assert_eq!(app.route("/v2/a/tags/list"), Some("registry"));
        assert_eq!(app.route("/v20"), None);
        let registry = app.components.iter().find(|c| c.id == "registry").unwrap();
        assert_eq!(registry.config["max_layer_bytes"], "10");
        assert_eq!(
            registry.dependencies,
            vec![(
                "berth:registry/blobs-api@0.1.0".to_string(),
                dir.path().join("b.wasm")
            )]
        );
        let app = App::load(&p, &HashMap::from([("max".to_string(), "7".to_string())])).unwrap();
        let registry = app.components.iter().find(|c| c.id == "registry").unwrap();
        assert_eq!(registry.config["max_layer_bytes"], "7");
    }
}
