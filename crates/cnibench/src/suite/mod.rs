//! Suites: built-in presets or TOML files, CLI overrides, and expansion into points.
//!
//! Raw input (TOML text, `--set KEY=V1,V2`) is validated once into a [`Suite`]: every value
//! is parsed into a typed [`Value`] and remembers its [`Origin`] (file, line, column), so
//! errors found later — an impossible combination during [`expand`] — still name where the
//! value came from. Expansion is a pure function: lists become a matrix, each cell a
//! [`Point`].
//!
//! Layout: [`params`] (keys, values, units), [`file`](mod@file) (TOML parsing), [`presets`]
//! (`thesis`, `quick`).

pub mod file;
pub mod params;
pub mod presets;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::scenario::{
    BitsPerSec, Bytes, Direction, HttpWorkload, Objects, PathKind, Placement, Point, RateSearch,
    RrMode, RrWorkload, ScenarioKind, Seconds, StreamWorkload, Tool, Topology, Workload,
    WorkloadKind, Zerocopy,
};
pub use params::{Key, Raw, Value};

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// File path, `built-in suite NAME`, or the command-line argument.
    pub source: String,
    /// 1-based line, when the source is a file.
    pub line: Option<usize>,
    /// 1-based column, when the source is a file.
    pub column: Option<usize>,
}

impl Origin {
    /// An origin without a position (a command-line argument).
    pub fn arg(source: impl Into<String>) -> Self {
        Origin {
            source: source.into(),
            line: None,
            column: None,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        Ok(())
    }
}

/// A suite that cannot be loaded or expanded.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// A value, key or combination is not allowed.
    #[error("{0}")]
    Invalid(Box<Invalid>),
    /// The TOML does not parse.
    #[error("{origin}: {message}")]
    Syntax {
        /// Where.
        origin: Origin,
        /// The parser's message.
        message: String,
    },
    /// Neither a built-in suite nor a readable file.
    #[error("cannot read suite file {path}: {source} (built-in suites: {builtins})")]
    Read {
        /// The path tried.
        path: String,
        /// Built-in suite names.
        builtins: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A value, key or combination that is not allowed, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {field}: {problem} (allowed: {allowed})")]
pub struct Invalid {
    /// Where.
    pub origin: Origin,
    /// The offending field.
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// What would be accepted.
    pub allowed: String,
}

impl SuiteError {
    fn invalid(
        origin: &Origin,
        field: impl Into<String>,
        problem: impl Into<String>,
        allowed: impl Into<String>,
    ) -> Self {
        SuiteError::Invalid(Box::new(Invalid {
            origin: origin.clone(),
            field: field.into(),
            problem: problem.into(),
            allowed: allowed.into(),
        }))
    }
}

/// The values of one swept key and where they were written.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// One or more values; more than one makes a matrix dimension.
    pub values: Vec<Value>,
    /// Where the list was written.
    pub origin: Origin,
}

/// One `[[scenario]]` of a suite, defaults merged in.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioSpec {
    /// Id used by `--only`/`--skip` and in point ids (the kind name unless given).
    pub id: String,
    /// Which scenario of the table.
    pub kind: ScenarioKind,
    /// Where the scenario was written.
    pub origin: Origin,
    /// Swept parameters; missing keys take the kind's defaults.
    pub sweep: BTreeMap<Key, Sweep>,
}

/// A validated suite.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// Suite name (recorded in meta.json).
    pub name: String,
    /// One-line description.
    pub description: String,
    /// Scenarios in order.
    pub scenarios: Vec<ScenarioSpec>,
}

/// Command-line changes to a suite.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Keep only these scenario ids (empty = all).
    pub only: Vec<String>,
    /// Drop these scenario ids.
    pub skip: Vec<String>,
    /// Replace these keys' values in every scenario they apply to.
    pub set: Vec<(Key, Sweep)>,
}

/// Parses one `--set KEY=V1,V2` argument.
pub fn parse_set(arg: &str) -> Result<(Key, Sweep), SuiteError> {
    let origin = Origin::arg(format!("--set {arg}"));
    let Some((key, values)) = arg.split_once('=') else {
        return Err(SuiteError::invalid(
            &origin,
            "--set",
            "expected KEY=V1,V2,...",
            Key::all_names(),
        ));
    };
    let key = Key::parse(key.trim())
        .ok_or_else(|| SuiteError::invalid(&origin, key.trim(), "unknown key", Key::all_names()))?;
    let values = values
        .split(',')
        .map(|v| {
            params::parse_value(key, Raw::Str(v.trim()))
                .map_err(|p| SuiteError::invalid(&origin, key.name(), p, key.allowed()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((key, Sweep { values, origin }))
}

impl Suite {
    /// Applies `--only`, `--skip` and `--set`.
    pub fn apply(mut self, overrides: &Overrides) -> Result<Suite, SuiteError> {
        let ids: Vec<String> = self.scenarios.iter().map(|s| s.id.clone()).collect();
        for (flag, list) in [("--only", &overrides.only), ("--skip", &overrides.skip)] {
            for id in list {
                if !ids.contains(id) {
                    return Err(SuiteError::invalid(
                        &Origin::arg(format!("{flag} {id}")),
                        flag,
                        format!("no scenario `{id}` in suite `{}`", self.name),
                        ids.join(", "),
                    ));
                }
            }
        }
        self.scenarios.retain(|s| {
            (overrides.only.is_empty() || overrides.only.contains(&s.id))
                && !overrides.skip.contains(&s.id)
        });
        for (key, sweep) in &overrides.set {
            let mut used = false;
            for s in &mut self.scenarios {
                if key.applies_to(s.kind) {
                    s.sweep.insert(*key, sweep.clone());
                    used = true;
                }
            }
            if !used {
                let kinds: BTreeSet<&str> = ScenarioKind::ALL
                    .into_iter()
                    .filter(|k| key.applies_to(*k))
                    .map(ScenarioKind::as_str)
                    .collect();
                return Err(SuiteError::invalid(
                    &sweep.origin,
                    key.name(),
                    "applies to none of the selected scenarios",
                    format!(
                        "scenarios of kind {}",
                        kinds.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        }
        Ok(self)
    }
}

/// Expands a suite into its points: the cartesian product of each scenario's lists, with
/// the kind's defaults for missing keys. Within a scenario the scale keys
/// ([`Key::is_scale`]) vary slowest, every other key in [`Key::ALL`] order, the last
/// fastest. Points that differ only in keys irrelevant to
/// their workload collapse into one.
pub fn expand(suite: &Suite) -> Result<Vec<Point>, SuiteError> {
    let mut points = Vec::new();
    let mut seen = BTreeSet::new();
    for spec in &suite.scenarios {
        // Scale keys first (slowest), then the others in key order (last fastest).
        let mut keys: Vec<(&Key, &Sweep)> = spec.sweep.iter().collect();
        keys.sort_by_key(|(k, _)| !k.is_scale());
        let mut index = vec![0usize; keys.len()];
        'matrix: loop {
            let combo: Vec<(Key, Value, &Origin)> = keys
                .iter()
                .zip(&index)
                .map(|((k, s), i)| (**k, s.values[*i], &s.origin))
                .collect();
            let point = build_point(spec, &combo)?;
            if seen.insert(point.id.clone()) {
                points.push(point);
            }
            // Odometer increment, last key fastest.
            let mut pos = keys.len();
            loop {
                if pos == 0 {
                    break 'matrix;
                }
                pos -= 1;
                index[pos] += 1;
                if index[pos] < keys[pos].1.values.len() {
                    continue 'matrix;
                }
                index[pos] = 0;
            }
        }
    }
    Ok(points)
}

/// The value a kind uses for a key nobody set.
pub fn default_value(kind: ScenarioKind, key: Key) -> Option<Value> {
    use ScenarioKind as S;
    Some(match key {
        Key::Workload => Value::Workload(if kind == S::HttpReplicas {
            WorkloadKind::Http
        } else if kind == S::RrLatency {
            WorkloadKind::TcpRr
        } else {
            WorkloadKind::Tcp
        }),
        Key::Placement => Value::Placement(Placement::Inter),
        Key::Path => Value::Path(PathKind::Direct),
        Key::Services | Key::Streams | Key::Concurrency => Value::Count(1),
        Key::Pods => Value::Count(1000),
        Key::Replicas => Value::Count(10),
        Key::Direction => Value::Direction(Direction::Forward),
        Key::Rate => Value::Rate(0),
        Key::RrSize => Value::Bytes(1),
        Key::FileSize => Value::Bytes(10_000_000),
        Key::Duration => Value::Seconds(10.0),
        Key::Omit => Value::Seconds(1.0),
        Key::Nodelay => Value::Bool(false),
        Key::Zerocopy => Value::Zerocopy(Zerocopy::None),
        Key::Tool => Value::Tool(Tool::Netload),
        Key::Affinity => Value::Affinity(None),
        Key::Policies | Key::Length | Key::Mss | Key::Mtu | Key::Window => return None,
    })
}

/// Keys always shown in a point id for a kind, whatever their value.
fn defining_keys(kind: ScenarioKind) -> &'static [Key] {
    use ScenarioKind as S;
    match kind {
        S::Baseline => &[Key::Workload],
        S::PodToPod => &[Key::Workload, Key::Placement],
        S::PodToPodPolicies => &[Key::Workload, Key::Placement, Key::Pods, Key::Policies],
        S::PodToService => &[Key::Workload, Key::Placement, Key::Services],
        S::HttpReplicas => &[Key::Placement, Key::Services, Key::Replicas],
        S::RrLatency => &[Key::Workload, Key::Placement, Key::Path],
    }
}

fn build_point(spec: &ScenarioSpec, combo: &[(Key, Value, &Origin)]) -> Result<Point, SuiteError> {
    let kind = spec.kind;
    let lookup = |key: Key| {
        combo
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, v, o)| (*v, *o))
    };
    let get = |key: Key| {
        lookup(key)
            .map(|(v, _)| v)
            .or_else(|| default_value(kind, key))
    };
    let count = |key: Key| match get(key) {
        Some(Value::Count(n)) => Some(n as u32),
        _ => None,
    };
    let secs = |key: Key| match get(key) {
        Some(Value::Seconds(s)) => Seconds(s),
        _ => Seconds(0.0),
    };
    let bytes = |key: Key| match get(key) {
        Some(Value::Bytes(b)) => Some(Bytes(b)),
        _ => None,
    };
    let Some(Value::Workload(workload)) = get(Key::Workload) else {
        unreachable!("workload has a default")
    };
    if !kind.allowed_workloads().contains(&workload) {
        let origin = lookup(Key::Workload).map_or(&spec.origin, |(_, o)| o);
        return Err(SuiteError::invalid(
            origin,
            "workload",
            format!("`{workload}` does not apply to scenario {kind}"),
            kind.allowed_workloads()
                .iter()
                .map(|w| w.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    let at_least_one = |key: Key| -> Result<u32, SuiteError> {
        let n = count(key).unwrap_or(0);
        if n == 0 {
            let origin = lookup(key).map_or(&spec.origin, |(_, o)| o);
            return Err(SuiteError::invalid(
                origin,
                key.name(),
                format!("scenario {kind} needs at least one"),
                "an integer ≥ 1",
            ));
        }
        Ok(n)
    };
    let placement = match get(Key::Placement) {
        Some(Value::Placement(p)) if kind != ScenarioKind::Baseline => p,
        _ => Placement::Inter,
    };
    let path = match kind {
        ScenarioKind::PodToService | ScenarioKind::HttpReplicas => PathKind::Service,
        ScenarioKind::RrLatency => match get(Key::Path) {
            Some(Value::Path(p)) => p,
            _ => PathKind::Direct,
        },
        _ => PathKind::Direct,
    };
    let topology = Topology {
        placement,
        host_network: kind == ScenarioKind::Baseline,
        path,
        mtu: count(Key::Mtu),
    };
    let objects = match kind {
        ScenarioKind::PodToPodPolicies => {
            let pods = count(Key::Pods).unwrap_or(0);
            Objects {
                filler_pods: pods,
                policies: count(Key::Policies).unwrap_or(pods.saturating_mul(2)),
                ..Objects::default()
            }
        }
        ScenarioKind::PodToService => Objects {
            services: at_least_one(Key::Services)?,
            ..Objects::default()
        },
        ScenarioKind::HttpReplicas => Objects {
            services: at_least_one(Key::Services)?,
            replicas: at_least_one(Key::Replicas)?,
            ..Objects::default()
        },
        ScenarioKind::RrLatency if path == PathKind::Service => Objects {
            services: 1,
            ..Objects::default()
        },
        _ => Objects::default(),
    };
    let duration = secs(Key::Duration);
    let omit = secs(Key::Omit);
    let workload_spec = match workload {
        WorkloadKind::Tcp | WorkloadKind::Udp => Workload::Stream(StreamWorkload {
            udp: workload == WorkloadKind::Udp,
            duration,
            omit,
            streams: count(Key::Streams).unwrap_or(1),
            length: bytes(Key::Length),
            mss: count(Key::Mss).filter(|_| workload == WorkloadKind::Tcp),
            rate: match get(Key::Rate) {
                Some(Value::Rate(r)) => BitsPerSec(r),
                _ => BitsPerSec(0),
            },
            // UDP without a rate asks for the figure users need: the highest rate the path
            // carries without (almost) any loss. An explicit rate (0 = unlimited) is kept.
            // iperf3 has no search of its own; its UDP points keep sending at `rate`.
            find_rate: (workload == WorkloadKind::Udp
                && lookup(Key::Rate).is_none()
                && !matches!(get(Key::Tool), Some(Value::Tool(Tool::Iperf3))))
            .then_some(RateSearch::DEFAULT),
            direction: match get(Key::Direction) {
                Some(Value::Direction(d)) => d,
                _ => Direction::Forward,
            },
            nodelay: workload == WorkloadKind::Tcp
                && matches!(get(Key::Nodelay), Some(Value::Bool(true))),
            zerocopy: match get(Key::Zerocopy) {
                Some(Value::Zerocopy(z)) if workload == WorkloadKind::Tcp => z,
                _ => Zerocopy::None,
            },
            affinity: match get(Key::Affinity) {
                Some(Value::Affinity(a)) => a,
                _ => None,
            },
            window: bytes(Key::Window),
        }),
        WorkloadKind::TcpRr | WorkloadKind::TcpCrr | WorkloadKind::UdpRr => {
            Workload::Rr(RrWorkload {
                mode: match workload {
                    WorkloadKind::TcpRr => RrMode::TcpRr,
                    WorkloadKind::TcpCrr => RrMode::TcpCrr,
                    _ => RrMode::UdpRr,
                },
                duration,
                size: bytes(Key::RrSize).unwrap_or(Bytes(1)),
            })
        }
        WorkloadKind::Http => Workload::Http(HttpWorkload {
            file_size: bytes(Key::FileSize).unwrap_or(Bytes(10_000_000)),
            duration,
            concurrency: count(Key::Concurrency).unwrap_or(1),
        }),
    };
    // Coordinates: defining keys, plus relevant keys that are swept or differ from the
    // kind's default. Duration and omit never enter the id: they change how long a point
    // is measured, not what is measured.
    let mut params = BTreeMap::new();
    for key in Key::ALL {
        if !key.applies_to(kind)
            || !key.relevant_for(workload)
            || matches!(key, Key::Duration | Key::Omit)
        {
            continue;
        }
        let swept = spec.sweep.get(&key).is_some_and(|s| s.values.len() > 1);
        let value = match key {
            Key::Policies => Some(Value::Count(u64::from(objects.policies))),
            _ => get(key),
        };
        let Some(value) = value else { continue };
        let differs = default_value(kind, key).is_none_or(|d| d != value);
        if defining_keys(kind).contains(&key) || swept || differs {
            params.insert(key.name().to_string(), value.to_string());
        }
    }
    let coords: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Ok(Point {
        id: format!("{}/{}", spec.id, coords.join(",")),
        scenario: spec.id.clone(),
        kind,
        topology,
        objects,
        workload: workload_spec,
        tool: match get(Key::Tool) {
            Some(Value::Tool(t)) => t,
            _ => Tool::Netload,
        },
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Affinity;

    fn suite(text: &str) -> Suite {
        file::parse(text, "test.toml").unwrap()
    }

    #[test]
    fn lists_expand_to_a_matrix() {
        let s = suite(
            r#"
            [[scenario]]
            kind = "pod-to-service"
            services = [1, 10, 100]
            placement = ["inter", "intra"]
            workload = ["tcp", "udp"]
            "#,
        );
        let points = expand(&s).unwrap();
        assert_eq!(points.len(), 12);
        assert_eq!(
            points[0].id,
            "pod-to-service/placement=inter,services=1,workload=tcp"
        );
        assert!(points.iter().all(|p| p.objects.services >= 1));
        // The scale key varies slowest: each level's points are consecutive and the
        // levels rise, so a backend can keep the services between points.
        let services: Vec<u32> = points.iter().map(|p| p.objects.services).collect();
        assert_eq!(services, [1, 1, 1, 1, 10, 10, 10, 10, 100, 100, 100, 100]);
        let ids: Vec<&str> = points[..4].iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "pod-to-service/placement=inter,services=1,workload=tcp",
                "pod-to-service/placement=intra,services=1,workload=tcp",
                "pod-to-service/placement=inter,services=1,workload=udp",
                "pod-to-service/placement=intra,services=1,workload=udp",
            ]
        );
    }

    #[test]
    fn scale_keys_vary_slowest_services_before_replicas() {
        let points = expand(&presets::load("thesis").unwrap()).unwrap();
        let http: Vec<(u32, u32)> = points
            .iter()
            .filter(|p| p.kind == ScenarioKind::HttpReplicas)
            .map(|p| (p.objects.services, p.objects.replicas))
            .collect();
        let mut sorted = http.clone();
        sorted.sort_unstable();
        assert_eq!(http, sorted, "services slowest, then replicas");
        assert_eq!(http.len(), 16);
        let policies: Vec<u32> = points
            .iter()
            .filter(|p| p.kind == ScenarioKind::PodToPodPolicies)
            .map(|p| p.objects.filler_pods)
            .collect();
        assert_eq!(policies, [1000, 1000, 10000, 10000]);
    }

    #[test]
    fn irrelevant_keys_do_not_duplicate_points() {
        let s = suite(
            r#"
            [[scenario]]
            kind = "pod-to-pod"
            workload = ["tcp", "tcp-crr"]
            streams = [1, 4]
            "#,
        );
        let ids: Vec<String> = expand(&s).unwrap().into_iter().map(|p| p.id).collect();
        assert_eq!(
            ids,
            [
                "pod-to-pod/placement=inter,streams=1,workload=tcp",
                "pod-to-pod/placement=inter,streams=4,workload=tcp",
                "pod-to-pod/placement=inter,workload=tcp-crr",
            ]
        );
    }

    #[test]
    fn udp_without_a_rate_searches_and_with_one_keeps_it() {
        let points = expand(&presets::load("thesis").unwrap()).unwrap();
        let udp: Vec<&StreamWorkload> = points
            .iter()
            .filter_map(|p| match &p.workload {
                Workload::Stream(s) if s.udp => Some(s),
                _ => None,
            })
            .collect();
        assert!(!udp.is_empty());
        assert!(udp.iter().all(|s| s.find_rate == Some(RateSearch::DEFAULT)));
        let tcp_searches = points
            .iter()
            .any(|p| matches!(&p.workload, Workload::Stream(s) if !s.udp && s.find_rate.is_some()));
        assert!(!tcp_searches);
        let suite = presets::load("thesis")
            .unwrap()
            .apply(&Overrides {
                set: vec![parse_set("rate=0").unwrap()],
                ..Overrides::default()
            })
            .unwrap();
        let points = expand(&suite).unwrap();
        assert!(points.iter().all(|p| match &p.workload {
            Workload::Stream(s) => s.find_rate.is_none(),
            _ => true,
        }));
    }

    #[test]
    fn affinity_choices_expand_to_points_and_a_swept_default_is_named() {
        let points = expand(&suite(
            r#"name = "t"
[[scenario]]
kind = "pod-to-pod"
workload = "tcp"
affinity = ["none", "same", "1/0"]
"#,
        ))
        .unwrap();
        let got: Vec<(String, Option<Affinity>)> = points
            .iter()
            .map(|p| match &p.workload {
                Workload::Stream(s) => (p.id.clone(), s.affinity),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "pod-to-pod/affinity=none,placement=inter,workload=tcp".into(),
                    None
                ),
                (
                    "pod-to-pod/affinity=same,placement=inter,workload=tcp".into(),
                    Some(Affinity::SameCore)
                ),
                (
                    "pod-to-pod/affinity=1/0,placement=inter,workload=tcp".into(),
                    Some(Affinity::Cores(1, 0))
                ),
            ]
        );
        let single = expand(&suite(
            "name = \"t\"\n[[scenario]]\nkind = \"pod-to-pod\"\nworkload = \"tcp\"\n",
        ))
        .unwrap();
        assert_eq!(single[0].id, "pod-to-pod/placement=inter,workload=tcp");
        let err = parse_set("affinity=both").unwrap_err().to_string();
        assert!(err.contains("`none`, `same`"), "{err}");
    }

    #[test]
    fn affinity_keeps_the_json_shape_of_older_runs() {
        for (a, json) in [
            (Affinity::Cores(0, 1), "[0,1]"),
            (Affinity::SameCore, r#""same""#),
        ] {
            assert_eq!(serde_json::to_string(&a).unwrap(), json);
            assert_eq!(serde_json::from_str::<Affinity>(json).unwrap(), a);
        }
    }

    #[test]
    fn a_tool_sweep_puts_the_tools_of_a_point_next_to_each_other() {
        let s = suite(
            r#"
            [[scenario]]
            kind = "pod-to-pod"
            workload = ["tcp", "udp"]
            nodelay = true
            "#,
        )
        .apply(&Overrides {
            set: vec![parse_set("tool=netload,iperf3").unwrap()],
            ..Overrides::default()
        })
        .unwrap();
        let points = expand(&s).unwrap();
        let ids: Vec<&str> = points.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "pod-to-pod/nodelay=true,placement=inter,tool=netload,workload=tcp",
                "pod-to-pod/nodelay=true,placement=inter,tool=iperf3,workload=tcp",
                "pod-to-pod/placement=inter,tool=netload,workload=udp",
                "pod-to-pod/placement=inter,tool=iperf3,workload=udp",
            ]
        );
        assert_eq!(points[1].tool, Tool::Iperf3);
        let Workload::Stream(tcp) = &points[0].workload else {
            panic!("stream")
        };
        assert!(tcp.nodelay);
        let Workload::Stream(udp) = &points[2].workload else {
            panic!("stream")
        };
        assert!(!udp.nodelay, "nodelay is a TCP option");
        // Without a tool sweep, netload points keep the ids they always had.
        let plain = expand(&presets::load("quick").unwrap()).unwrap();
        assert_eq!(plain[0].id, "baseline/workload=tcp");
        assert!(plain.iter().all(|p| p.tool == Tool::Netload));
    }

    #[test]
    fn policies_default_to_twice_the_pods() {
        let s = suite("[[scenario]]\nkind = \"pod-to-pod-policies\"\npods = [10]\n");
        let p = &expand(&s).unwrap()[0];
        assert_eq!((p.objects.filler_pods, p.objects.policies), (10, 20));
    }

    #[test]
    fn impossible_workload_names_line_and_allowed() {
        let s = suite("[[scenario]]\nkind = \"http-replicas\"\nworkload = \"tcp\"\n");
        let err = expand(&s).unwrap_err().to_string();
        assert!(err.starts_with("test.toml:3:"), "{err}");
        assert!(
            err.contains("workload") && err.contains("allowed: http"),
            "{err}"
        );
    }

    #[test]
    fn set_overrides_and_only_skip() {
        let s = presets::load("thesis").unwrap();
        let overrides = Overrides {
            only: vec!["pod-to-service".into()],
            skip: vec![],
            set: vec![
                parse_set("services=1,10").unwrap(),
                parse_set("workload=tcp").unwrap(),
            ],
        };
        let points = expand(&s.apply(&overrides).unwrap()).unwrap();
        assert_eq!(points.len(), 4);
        let err = presets::load("quick")
            .unwrap()
            .apply(&Overrides {
                only: vec!["nope".into()],
                ..Overrides::default()
            })
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--only nope") && err.contains("baseline"),
            "{err}"
        );
    }

    #[test]
    fn set_rejects_unknown_keys_and_bad_values() {
        let err = parse_set("sevrices=1").unwrap_err().to_string();
        assert!(
            err.contains("unknown key") && err.contains("services"),
            "{err}"
        );
        let err = parse_set("streams=0").unwrap_err().to_string();
        assert!(err.contains("from 1 to 128"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn matrix_size_is_the_product_of_list_lengths(
            services in proptest::collection::btree_set(1u32..100_000, 1..6),
            placements in proptest::sample::subsequence(vec!["inter", "intra"], 1..=2),
            workloads in proptest::sample::subsequence(vec!["tcp", "udp", "tcp-crr"], 1..=3),
        ) {
            let list = |v: Vec<String>| v.join(", ");
            let text = format!(
                "[[scenario]]\nkind = \"pod-to-service\"\nservices = [{}]\nplacement = [{}]\nworkload = [{}]\n",
                list(services.iter().map(ToString::to_string).collect()),
                list(placements.iter().map(|p| format!("\"{p}\"")).collect()),
                list(workloads.iter().map(|w| format!("\"{w}\"")).collect()),
            );
            let points = expand(&file::parse(&text, "p.toml").unwrap()).unwrap();
            proptest::prop_assert_eq!(points.len(), services.len() * placements.len() * workloads.len());
            let ids: BTreeSet<&String> = points.iter().map(|p| &p.id).collect();
            proptest::prop_assert_eq!(ids.len(), points.len());
        }
    }

    #[test]
    fn builtin_suites_expand() {
        let thesis = expand(&presets::load("thesis").unwrap()).unwrap();
        let quick = expand(&presets::load("quick").unwrap()).unwrap();
        assert!(thesis.len() > 50, "{}", thesis.len());
        assert_eq!(quick.len(), ScenarioKind::ALL.len());
        for kind in ScenarioKind::ALL {
            assert!(thesis.iter().any(|p| p.kind == kind));
        }
    }
}
