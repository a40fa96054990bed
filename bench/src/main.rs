//! `berth-bench`: Berth and CNCF Distribution 2.8 on the same machine in the
//! same run, workloads alternating between them round by round, medians
//! reported with the ratio Berth/Distribution, next to the machine's own
//! ceilings. `--quick` only checks that everything still runs (CI).

mod backends;
mod ceilings;
mod client;
mod console;
mod gc;
mod registry;
mod replication;
mod webhooks;
mod workloads;

use anyhow::{Context, Result};
use clap::Parser;
use hyper::Method;
use registry::Registry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Benchmark Berth against CNCF Distribution side by side")]
struct Args {
    /// Tiny sizes and one round: checks the benchmark runs, not timings.
    #[arg(long)]
    quick: bool,
    /// Rounds per workload (medians are reported).
    #[arg(long)]
    rounds: Option<usize>,
    /// A third registry to measure too, e.g. http://127.0.0.1:5000.
    #[arg(long)]
    third: Option<String>,
    /// Tags in the one repository of the metadata-scale workload.
    #[arg(long)]
    tags: Option<usize>,
    /// Repositories in the metadata-scale workload.
    #[arg(long)]
    repos: Option<usize>,
    /// Another Berth checkout (built with `make build`), e.g. a worktree of
    /// the commit before a change: measured in the same run as "baseline".
    #[arg(long)]
    baseline: Option<std::path::PathBuf>,
    /// Run only these workloads (comma-separated: images, large, pulls, webhooks, console,
    /// rates, mixed, metadata, ceilings, gc), e.g. to profile one of them.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The gc workload's live blobs; it runs again among ten times as many
    /// (default 100000; --quick 2000).
    #[arg(long)]
    gc_live: Option<usize>,
    /// The gc workload's garbage blobs (default 10000; --quick 500).
    #[arg(long)]
    gc_garbage: Option<usize>,
    /// The gc workload on Berth alone: at full size, pushing 1.1M blobs
    /// into Distribution takes over an hour on 2 cores.
    #[arg(long)]
    gc_berth_only: bool,
    /// The stores under test: `postgres,s3` puts Berth on PostgreSQL and S3
    /// (BERTH_TEST_POSTGRES_URL, BERTH_TEST_S3: make test's servers) and
    /// Distribution on its S3 driver on the same bucket, adds a second Berth
    /// host on the same stores (the `scaling` workload), and makes the
    /// metadata scale 10000 tags by default. Default: embedded.
    #[arg(long, value_delimiter = ',')]
    backend: Vec<String>,
    /// Also measure the Spin build (`make spin`, infra/spin/spin.toml) on
    /// `berth serve`, as "spin", on a database and bucket prefix of its own
    /// (needs `--backend postgres,s3`): its adapters reach the stores
    /// through spin:postgres and outbound HTTP, so layer bytes pass through
    /// the guest. In the image, layer, pull and rate workloads.
    #[arg(long)]
    spin: bool,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench/results.json")]
    json: std::path::PathBuf,
}

struct Plan {
    rounds: usize,
    big: u64,
    load_secs: f64,
    mixed_sizes: Vec<usize>,
    mixed_ops: usize,
    tags: usize,
    repos: usize,
}

#[derive(Serialize)]
struct Row {
    figure: String,
    unit: String,
    higher_is_better: bool,
    /// Median per registry.
    values: BTreeMap<String, f64>,
    /// Berth / Distribution.
    ratio: Option<f64>,
}

/// Samples of one figure, per registry, in the order figures were first seen.
struct Series {
    figure: String,
    unit: String,
    higher_is_better: bool,
    samples: BTreeMap<String, Vec<f64>>,
}

#[derive(Default)]
struct Results(Vec<Series>);

impl Results {
    fn add(&mut self, figure: &str, unit: &str, higher: bool, registry: &str, v: f64) {
        let i = match self.0.iter().position(|s| s.figure == figure) {
            Some(i) => i,
            None => {
                self.0.push(Series {
                    figure: figure.into(),
                    unit: unit.into(),
                    higher_is_better: higher,
                    samples: BTreeMap::new(),
                });
                self.0.len() - 1
            }
        };
        self.0[i]
            .samples
            .entry(registry.to_string())
            .or_default()
            .push(v);
    }

    fn rows(&self) -> Vec<Row> {
        self.0
            .iter()
            .map(|s| {
                let values: BTreeMap<String, f64> = s
                    .samples
                    .iter()
                    .map(|(r, v)| (r.clone(), median(v)))
                    .collect();
                let reference = values.get("distribution").or(values.get("skopeo"));
                let ratio = match (values.get("berth"), reference) {
                    (Some(b), Some(d)) if *d != 0.0 => Some(b / d),
                    _ => None,
                };
                Row {
                    figure: s.figure.clone(),
                    unit: s.unit.clone(),
                    higher_is_better: s.higher_is_better,
                    values,
                    ratio,
                }
            })
            .collect()
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

const MIB: usize = 1 << 20;
/// Manifest PUTs sent to Distribution before the rest is seeded on disk.
const HTTP_FILL_CAP: usize = 2000;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let plan = if args.quick {
        Plan {
            rounds: 1,
            big: 16 << 20,
            load_secs: 1.0,
            mixed_sizes: vec![MIB, 2 * MIB],
            mixed_ops: 4,
            tags: 200,
            repos: 50,
        }
    } else {
        Plan {
            rounds: 3,
            big: 1 << 30,
            load_secs: 10.0,
            mixed_sizes: vec![MIB, 10 * MIB, 100 * MIB],
            mixed_ops: 10,
            tags: 100_000,
            repos: 10_000,
        }
    };
    let rounds = args.rounds.unwrap_or(plan.rounds);
    let backends = backends::Backends::from_args(&args.backend)?;
    let plan = Plan {
        tags: args.tags.unwrap_or(if backends.scaled() {
            plan.tags.min(10_000)
        } else {
            plan.tags
        }),
        repos: args.repos.unwrap_or(plan.repos),
        ..plan
    };
    let started = Instant::now();
    let root = registry::workspace_root();
    eprintln!("stores: {}", backends.describe());
    let stores = tempfile::tempdir()?;
    let runtime_config = backends.berth_runtime_config(stores.path()).await?;
    let mut regs = vec![
        Registry::berth(&root, runtime_config.as_deref())?,
        Registry::distribution(backends.distribution_storage())?,
    ];
    // A second host serving the same registry from the same stores.
    let second = match &runtime_config {
        Some(c) => Some(Registry::berth_named(&root, "berth-2", Some(c))?),
        None => None,
    };
    if let Some(dir) = &args.baseline {
        regs.push(Registry::berth_named(dir, "baseline", None)?);
    }
    if args.spin {
        let (config, variables) = backends.spin_stores(stores.path()).await?;
        regs.push(Registry::spin(&root, &config, &variables)?);
    }
    if let Some(url) = &args.third {
        regs.push(Registry::external(url)?);
    }
    for r in &regs {
        eprintln!("{} on {}", r.name, r.host);
    }
    let want = |w: &str| args.only.is_empty() || args.only.iter().any(|o| o == w);
    let mut res = Results::default();
    let mut cpu_load: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    let mut seed = 1u64;
    let mut next = || {
        seed += 1;
        seed
    };

    eprintln!("images…");
    for _ in 0..rounds * want("images") as usize {
        for r in &regs {
            let (push, pull) = workloads::image_round_trip(&r.host, next(), 3, MIB)
                .await
                .with_context(|| format!("{}: 3×1 MiB image", r.name))?;
            res.add("push 3×1 MiB image", "s", false, &r.name, push);
            res.add("pull 3×1 MiB image", "s", false, &r.name, pull);
            let (push, pull) = workloads::image_round_trip(&r.host, next(), 40, 256 << 10).await?;
            res.add("push 40×256 KiB image", "s", false, &r.name, push);
            res.add("pull 40×256 KiB image", "s", false, &r.name, pull);
        }
    }

    let big_label = if plan.big >= 1 << 30 {
        format!("{} GiB", plan.big >> 30)
    } else {
        format!("{} MiB", plan.big >> 20)
    };
    if want("large") {
        eprintln!("large layer…");
        for _ in 0..rounds {
            for r in &regs {
                let (put, patch, pull) = workloads::big_layer(&r.host, next(), plan.big).await?;
                res.add(
                    &format!("{big_label} layer monolithic PUT"),
                    "MiB/s",
                    true,
                    &r.name,
                    put,
                );
                res.add(
                    &format!("{big_label} layer streamed PATCH"),
                    "MiB/s",
                    true,
                    &r.name,
                    patch,
                );
                res.add(
                    &format!("{big_label} layer pull"),
                    "MiB/s",
                    true,
                    &r.name,
                    pull,
                );
            }
        }
    }

    if want("pulls") || want("rates") {
        eprintln!("concurrent pulls…");
        for r in &regs {
            workloads::push_image(
                &r.host,
                "bench/forty",
                "v1",
                &workloads::image(7, 40, 256 << 10),
            )
            .await?;
        }
        for _ in 0..rounds * want("pulls") as usize {
            for r in &regs {
                let s = workloads::concurrent_pulls(&r.host, "bench/forty", 16).await?;
                res.add("16 concurrent pulls of 40×256 KiB", "s", false, &r.name, s);
            }
        }
    }

    if want("rates") {
        eprintln!("request rates…");
        let forty = workloads::image(7, 40, 256 << 10);
        let head_path = format!("/v2/bench/forty/blobs/{}", forty.layers[0].0);
        for _ in 0..rounds {
            for r in &regs {
                let cpu0 = r.cpu_seconds();
                let m = workloads::load(
                    &r.host,
                    Method::GET,
                    "/v2/bench/forty/manifests/v1",
                    Some(workloads::OCI_MANIFEST),
                    32,
                    plan.load_secs,
                )
                .await?;
                let h =
                    workloads::load(&r.host, Method::HEAD, &head_path, None, 32, plan.load_secs)
                        .await?;
                if let (Some(a), Some(b)) = (cpu0, r.cpu_seconds()) {
                    let e = cpu_load.entry(r.name.clone()).or_default();
                    e.0 += b - a;
                    e.1 += m.requests + h.requests;
                }
                res.add("manifest GET by tag, c=32", "req/s", true, &r.name, m.rps);
                res.add("manifest GET p50, c=32", "ms", false, &r.name, m.p50_ms);
                res.add("manifest GET p99, c=32", "ms", false, &r.name, m.p99_ms);
                res.add("blob HEAD, c=32", "req/s", true, &r.name, h.rps);
                res.add("blob HEAD p50, c=32", "ms", false, &r.name, h.p50_ms);
                res.add("blob HEAD p99, c=32", "ms", false, &r.name, h.p99_ms);
            }
        }
        if let (Some(two), Some(berth)) = (&second, regs.iter().find(|r| r.name == "berth")) {
            eprintln!("two hosts…");
            for _ in 0..rounds {
                let path = "/v2/bench/forty/manifests/v1";
                let one = workloads::load(
                    &berth.host,
                    Method::GET,
                    path,
                    Some(workloads::OCI_MANIFEST),
                    32,
                    plan.load_secs,
                )
                .await?;
                let (a, b) = tokio::try_join!(
                    workloads::load(
                        &berth.host,
                        Method::GET,
                        path,
                        Some(workloads::OCI_MANIFEST),
                        16,
                        plan.load_secs
                    ),
                    workloads::load(
                        &two.host,
                        Method::GET,
                        path,
                        Some(workloads::OCI_MANIFEST),
                        16,
                        plan.load_secs
                    ),
                )?;
                res.add(
                    "manifest GET, one host, c=32",
                    "req/s",
                    true,
                    "berth",
                    one.rps,
                );
                res.add(
                    "manifest GET, two hosts on the same stores, c=16 each",
                    "req/s",
                    true,
                    "berth",
                    a.rps + b.rps,
                );
                res.add(
                    "two hosts / one host (manifest GET)",
                    "ratio",
                    true,
                    "berth",
                    (a.rps + b.rps) / one.rps,
                );
            }
        }
        for (name, (cpu, n)) in &cpu_load {
            res.add(
                "registry CPU per request (GET/HEAD load)",
                "µs",
                false,
                name,
                cpu / *n as f64 * 1e6,
            );
        }
    }

    if want("gc") {
        eprintln!("garbage collection…");
        let (live, garbage) = if args.quick {
            (2_000, 500)
        } else {
            (100_000, 10_000)
        };
        let live = args.gc_live.unwrap_or(live);
        let garbage = args.gc_garbage.unwrap_or(garbage);
        // Distribution collects offline, walking everything; Berth's
        // collection reads its queue. Berth's baseline may predate it.
        for r in regs
            .iter()
            .filter(|r| r.name == "berth" || (r.name == "distribution" && !args.gc_berth_only))
        {
            let f = gc::run(r, live, garbage).await?;
            for (n, secs, deleted) in &f.runs {
                let label = format!("GC of {garbage} garbage blobs among {n} live");
                res.add(&format!("{label}: time"), "s", false, &r.name, *secs);
                res.add(
                    &format!("{label}: blobs deleted"),
                    "count",
                    true,
                    &r.name,
                    *deleted as f64,
                );
                res.add(
                    &format!("{label}: objects/s"),
                    "per s",
                    true,
                    &r.name,
                    *deleted as f64 / secs.max(1e-9),
                );
            }
            for (secs, n) in f.drain_secs.iter().zip([live, live * 10]) {
                res.add(
                    &format!("first GC after pushing up to {n} live blobs (queue drain)"),
                    "s",
                    false,
                    &r.name,
                    *secs,
                );
            }
            if let Some(ratio) = f.get_ratio {
                res.add(
                    "manifest GET rate during GC / without (c=8)",
                    "ratio",
                    true,
                    &r.name,
                    ratio,
                );
            }
        }
    }

    if want("console") {
        eprintln!("console…");
        // Berth's own pages (the baseline may predate them).
        if let Some(berth) = regs.iter().find(|r| r.name == "berth") {
            let tags = if args.quick { 200 } else { 10_000 };
            let work = tempfile::tempdir_in(root.join("target"))?;
            let f = console::run(&root, berth, tags, plan.big, work.path()).await?;
            let page = |what: &str| format!("console: repository with {tags} tags, {what}");
            res.add(
                &page("page first byte"),
                "ms",
                false,
                "berth",
                f.page_ttfb_ms,
            );
            res.add(
                &page("tag list API first byte"),
                "ms",
                false,
                "berth",
                f.tags_ttfb_ms,
            );
            res.add(
                &page("100 tags on screen"),
                "ms",
                false,
                "berth",
                f.rendered_ms,
            );
            let figure = format!("{big_label} docker save archive upload (console vs skopeo copy)");
            res.add(&figure, "MiB/s", true, "berth", f.console_mib_s);
            res.add(&figure, "MiB/s", true, "skopeo", f.skopeo_mib_s);
        }
    }

    if want("replication") {
        eprintln!("replication…");
        // Berth's own feature (the baseline may predate it), copying to
        // the Distribution under test, against skopeo between the same two.
        if let (Some(berth), Some(dist)) = (
            regs.iter().find(|r| r.name == "berth"),
            regs.iter().find(|r| r.name == "distribution"),
        ) {
            let signer = webhooks::signer(&berth.host).await?;
            replication::register(berth, dist, &signer).await?;
            for (label, layers, size) in [
                (format!("{big_label} layer"), 1, plan.big),
                ("40×256 KiB image".to_string(), 40, 256 << 10),
            ] {
                for _ in 0..rounds {
                    let f = replication::run(berth, dist, &signer, next(), layers, size).await?;
                    let figure = format!("replicate {label} to Distribution");
                    res.add(&figure, "MiB/s", true, "berth", f.berth_mib_s);
                    res.add(&figure, "MiB/s", true, "skopeo", f.skopeo_mib_s);
                    let figure = format!("peak RSS while replicating {label}");
                    res.add(&figure, "MiB", false, "berth", f.berth_peak_rss_mib);
                    res.add(&figure, "MiB", false, "skopeo", f.skopeo_peak_rss_mib);
                }
            }
        }
    }

    if want("webhooks") {
        eprintln!("webhooks…");
        let pushes = if args.quick { 20 } else { 1000 };
        let mut signer = None;
        for round in 0..rounds as u64 {
            // Berth's own feature: the baseline may predate it.
            for r in regs.iter().filter(|r| r.name == "berth") {
                if signer.is_none() {
                    signer = Some(webhooks::signer(&r.host).await?);
                }
                let s = signer.as_ref().expect("made above");
                let f = webhooks::run(&r.host, pushes, round, s).await?;
                let label = |s: &str| format!("{s} ({pushes} pushes, c=16)");
                res.add(
                    &label("manifest PUT fill, no webhook"),
                    "req/s",
                    true,
                    &r.name,
                    f.fill_without,
                );
                res.add(
                    &label("manifest PUT fill, webhook policy + image trigger"),
                    "req/s",
                    true,
                    &r.name,
                    f.fill_with,
                );
                res.add(
                    &label("push ack to webhook receipt p50"),
                    "ms",
                    false,
                    &r.name,
                    f.p50_ms,
                );
                res.add(
                    &label("push ack to webhook receipt p99"),
                    "ms",
                    false,
                    &r.name,
                    f.p99_ms,
                );
                res.add(
                    &label("webhooks delivered"),
                    "per s",
                    true,
                    &r.name,
                    f.delivered_per_s,
                );
                res.add(
                    &label("image trigger updates by then"),
                    "count",
                    true,
                    &r.name,
                    f.image_updates as f64,
                );
            }
        }
    }

    eprintln!("mixed pull/push…");
    for _ in 0..rounds * want("mixed") as usize {
        for r in regs.iter().filter(|r| r.name != "spin") {
            let ops =
                workloads::mixed(&r.host, next(), &plan.mixed_sizes, 10, plan.mixed_ops).await?;
            res.add(
                "mixed 75% pull / 25% push, c=10",
                "ops/s",
                true,
                &r.name,
                ops,
            );
        }
    }

    if want("metadata") {
        eprintln!(
            "metadata scale ({} tags, {} repositories)…",
            plan.tags, plan.repos
        );
        for r in regs.iter().filter(|r| r.name != "spin") {
            // Distribution is filled over HTTP up to a cap, the rest on disk; the
            // fill rate is measured on the HTTP part only.
            let cap = |n: usize| {
                if r.name == "distribution" {
                    n.min(HTTP_FILL_CAP)
                } else {
                    n
                }
            };
            let (tags, repos) = (cap(plan.tags), cap(plan.repos));
            let t = Instant::now();
            workloads::fill_metadata(&r.host, "scale/tags", 0..tags, 0..repos, 16).await?;
            res.add(
                "metadata fill (manifest PUTs/s, c=16)",
                "req/s",
                true,
                &r.name,
                (tags + repos) as f64 / t.elapsed().as_secs_f64(),
            );
            if tags < plan.tags || repos < plan.repos {
                let t = Instant::now();
                match &backends.s3 {
                    Some(s3) => {
                        backends::seed_distribution_s3(
                            s3,
                            &backends.run,
                            tags..plan.tags,
                            repos..plan.repos,
                        )
                        .await?
                    }
                    None => {
                        let root = r.storage_root().context("no storage root to seed")?;
                        workloads::seed_distribution(&root, tags..plan.tags, repos..plan.repos)?
                    }
                }
                eprintln!(
                    "  seeded {} on disk in {:.0} s",
                    r.name,
                    t.elapsed().as_secs_f64()
                );
            }
            let tags = workloads::latency_ms(
                &r.host,
                &format!("/v2/scale/tags/tags/list?n=100&last=t{:06}", plan.tags / 2),
                21,
            )
            .await?;
            res.add(
                &format!("tag-list page n=100 at {} tags", plan.tags),
                "ms",
                false,
                &r.name,
                tags,
            );
            let catalog = workloads::latency_ms(
                &r.host,
                &format!("/v2/_catalog?n=100&last=scale/repo{:05}", plan.repos / 2),
                21,
            )
            .await?;
            res.add(
                &format!("catalog page n=100 at {} repos", plan.repos),
                "ms",
                false,
                &r.name,
                catalog,
            );
        }
    }

    for r in &regs {
        if let Some(rss) = r.peak_rss_mib() {
            res.add("peak RSS over the run", "MiB", false, &r.name, rss);
        }
    }

    let mut ceilings = BTreeMap::new();
    if want("ceilings") {
        eprintln!("machine ceilings…");
        ceilings.insert(
            "sha256 MiB/s".to_string(),
            ceilings::sha256_mib_s(if args.quick { 32 << 20 } else { 512 << 20 }),
        );
        let tmp = tempfile::tempdir()?;
        ceilings.insert(
            "fdatasync write MiB/s".to_string(),
            ceilings::fdatasync_write_mib_s(tmp.path(), plan.big as usize)?,
        );
        // The ceilings are context, not results: a failure skips them.
        match ceilings::Nginx::start(plan.big) {
            Ok(n) => {
                match n.small_rps(plan.load_secs).await {
                    Ok(v) => drop(ceilings.insert("nginx 1 KiB GET req/s, c=32".to_string(), v)),
                    Err(e) => eprintln!("nginx small-file ceiling skipped: {e:#}"),
                }
                match n.big_mib_s(plan.big).await {
                    Ok(v) => drop(ceilings.insert(format!("nginx {big_label} GET MiB/s"), v)),
                    Err(e) => eprintln!("nginx large-file ceiling skipped: {e:#}"),
                }
            }
            Err(e) => eprintln!("nginx ceilings skipped: {e:#}"),
        }
    }

    for r in second.iter() {
        if let Some(rss) = r.peak_rss_mib() {
            res.add("peak RSS over the run", "MiB", false, &r.name, rss);
        }
    }
    let names: Vec<String> = regs.iter().map(|r| r.name.clone()).collect();
    // Stopped before their stores are removed.
    drop(second);
    drop(regs);
    backends.clean().await;
    let rows = res.rows();
    print_table(&rows, &names, &ceilings);
    let doc = serde_json::json!({
        "date": std::process::Command::new("date").arg("-u").arg("+%Y-%m-%dT%H:%M:%SZ").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
        "machine": { "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "quick": args.quick,
        "stores": backends.describe(),
        "rounds": rounds,
        "seconds": started.elapsed().as_secs_f64(),
        "results": rows,
        "ceilings": ceilings,
    });
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_vec_pretty(&doc)?)?;
    eprintln!(
        "done in {:.0} s; results in {}",
        started.elapsed().as_secs_f64(),
        args.json.display()
    );
    Ok(())
}

fn print_table(rows: &[Row], registries: &[String], ceilings: &BTreeMap<String, f64>) {
    // The registries, then other references some figures have (skopeo).
    let mut names: Vec<&str> = registries.iter().map(String::as_str).collect();
    for row in rows {
        for n in row.values.keys() {
            if !names.contains(&n.as_str()) {
                names.push(n);
            }
        }
    }
    print!("| {:<42} | {:<6} |", "figure", "unit");
    for n in &names {
        print!(" {n:>12} |");
    }
    // Berth over Distribution, or over skopeo where that is the reference.
    println!(" {:>12} |", "berth/ref");
    print!("| {} | {} |", "-".repeat(42), "-".repeat(6));
    for _ in &names {
        print!(" {} |", "-".repeat(12));
    }
    println!(" {} |", "-".repeat(12));
    for row in rows {
        print!("| {:<42} | {:<6} |", row.figure, row.unit);
        for n in &names {
            match row.values.get(*n) {
                Some(v) => print!(" {v:>12.2} |"),
                None => print!(" {:>12} |", "—"),
            }
        }
        match row.ratio {
            Some(r) => println!(" {r:>12.2} |"),
            None => println!(" {:>12} |", "—"),
        }
    }
    println!();
    println!("| machine ceiling | value |");
    println!("| --- | --- |");
    for (k, v) in ceilings {
        println!("| {k} | {v:.0} |");
    }
}
