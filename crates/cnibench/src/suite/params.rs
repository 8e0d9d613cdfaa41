//! Suite parameters: the keys a suite file or `--set` may sweep, their allowed values and
//! parsing. One table ([`Key`]) says which scenario each key applies to and which workload
//! it is relevant for.

use std::fmt;

use crate::scenario::{
    Affinity, Direction, PathKind, Placement, ScenarioKind, Tool, WorkloadKind, Zerocopy,
};

/// A sweepable parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// `workload`: tcp, udp, tcp-rr, tcp-crr, udp-rr, http.
    Workload,
    /// `placement`: inter or intra node.
    Placement,
    /// `path`: direct or through a service (rr-latency).
    Path,
    /// `services`: services present.
    Services,
    /// `pods`: idle filler pods.
    Pods,
    /// `policies`: network policies (default: twice `pods`).
    Policies,
    /// `replicas`: server replicas behind the service.
    Replicas,
    /// `streams`: parallel streams.
    Streams,
    /// `direction`: forward, reverse, bidir.
    Direction,
    /// `length`: bytes per write / UDP payload.
    Length,
    /// `mss`: TCP MSS.
    Mss,
    /// `rate`: target bits per second per stream.
    Rate,
    /// `rr-size`: request/response payload.
    RrSize,
    /// `file-size`: HTTP body size.
    FileSize,
    /// `concurrency`: HTTP connections.
    Concurrency,
    /// `mtu`: interface MTU.
    Mtu,
    /// `duration`: measured seconds per repetition.
    Duration,
    /// `omit`: warm-up seconds inside a repetition.
    Omit,
    /// `nodelay`: disable Nagle's algorithm (TCP streams).
    Nodelay,
    /// `zerocopy`: none, sendfile, msg (TCP streams).
    Zerocopy,
    /// `affinity`: `none` (the scheduler places the stream threads), `same` (client and
    /// server threads on the last core) or `C/S`, client threads on core C and server
    /// threads on core S (stream workloads).
    Affinity,
    /// `window`: socket buffer size (SO_SNDBUF and SO_RCVBUF) of stream sockets; unset,
    /// the kernel autotunes them.
    Window,
    /// `tool`: netload or iperf3 (last, so a tool sweep puts the tools of one point
    /// next to each other).
    Tool,
}

/// The value kinds of parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Workload,
    Placement,
    Path,
    Direction,
    Count { min: u64, max: u64 },
    Bytes { min: u64, max: u64 },
    Rate,
    Seconds { min: f64, max: f64 },
    Bool,
    Zerocopy,
    Affinity,
    Tool,
}

impl Key {
    /// Whether the key sets how many objects a point's cluster holds (services, filler
    /// pods, policies, server replicas). [`super::expand`] varies these slowest, so points
    /// sharing a scale level run one after another and levels rise monotonically: a
    /// backend can keep the objects between them instead of recreating them.
    pub fn is_scale(self) -> bool {
        matches!(
            self,
            Key::Services | Key::Pods | Key::Policies | Key::Replicas
        )
    }

    /// Every key, in the order used for matrices and point ids.
    pub const ALL: [Key; 23] = [
        Key::Workload,
        Key::Placement,
        Key::Path,
        Key::Services,
        Key::Pods,
        Key::Policies,
        Key::Replicas,
        Key::Streams,
        Key::Direction,
        Key::Length,
        Key::Mss,
        Key::Rate,
        Key::RrSize,
        Key::FileSize,
        Key::Concurrency,
        Key::Mtu,
        Key::Duration,
        Key::Omit,
        Key::Nodelay,
        Key::Zerocopy,
        Key::Affinity,
        Key::Window,
        Key::Tool,
    ];

    /// Name in suite files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Key::Workload => "workload",
            Key::Placement => "placement",
            Key::Path => "path",
            Key::Services => "services",
            Key::Pods => "pods",
            Key::Policies => "policies",
            Key::Replicas => "replicas",
            Key::Streams => "streams",
            Key::Direction => "direction",
            Key::Length => "length",
            Key::Mss => "mss",
            Key::Rate => "rate",
            Key::RrSize => "rr-size",
            Key::FileSize => "file-size",
            Key::Concurrency => "concurrency",
            Key::Mtu => "mtu",
            Key::Duration => "duration",
            Key::Omit => "omit",
            Key::Nodelay => "nodelay",
            Key::Zerocopy => "zerocopy",
            Key::Affinity => "affinity",
            Key::Window => "window",
            Key::Tool => "tool",
        }
    }

    /// Parses a key name.
    pub fn parse(s: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Every key name, comma-separated (for error messages).
    pub fn all_names() -> String {
        Key::ALL.map(Key::name).join(", ")
    }

    fn kind(self) -> Kind {
        match self {
            Key::Workload => Kind::Workload,
            Key::Placement => Kind::Placement,
            Key::Path => Kind::Path,
            Key::Direction => Kind::Direction,
            Key::Services | Key::Pods => Kind::Count {
                min: 0,
                max: 100_000,
            },
            Key::Policies => Kind::Count {
                min: 0,
                max: 200_000,
            },
            Key::Replicas => Kind::Count { min: 1, max: 1000 },
            Key::Streams => Kind::Count { min: 1, max: 128 },
            Key::Concurrency => Kind::Count { min: 1, max: 1024 },
            Key::Mss => Kind::Count { min: 88, max: 9000 },
            Key::Mtu => Kind::Count {
                min: 576,
                max: 9216,
            },
            Key::Length => Kind::Bytes {
                min: 16,
                max: 64 << 20,
            },
            Key::RrSize => Kind::Bytes {
                min: 1,
                max: 1 << 20,
            },
            Key::FileSize => Kind::Bytes {
                min: 1,
                max: 1 << 34,
            },
            Key::Rate => Kind::Rate,
            Key::Duration => Kind::Seconds {
                min: 0.1,
                max: 3600.0,
            },
            Key::Omit => Kind::Seconds {
                min: 0.0,
                max: 600.0,
            },
            Key::Nodelay => Kind::Bool,
            Key::Zerocopy => Kind::Zerocopy,
            Key::Affinity => Kind::Affinity,
            Key::Window => Kind::Bytes {
                min: 4 << 10,
                max: 1 << 30,
            },
            Key::Tool => Kind::Tool,
        }
    }

    /// What values are allowed, for error messages.
    pub fn allowed(self) -> String {
        match self.kind() {
            Kind::Workload => WorkloadKind::ALL.map(WorkloadKind::as_str).join(", "),
            Kind::Placement => "inter, intra".into(),
            Kind::Path => "direct, service".into(),
            Kind::Direction => "forward, reverse, bidir".into(),
            Kind::Count { min, max } => format!("an integer from {min} to {max}"),
            Kind::Bytes { min, max } => {
                format!("bytes from {min} to {max}, as an integer or with a unit (64KiB, 10MB)")
            }
            Kind::Rate => "bits per second, 0 = unlimited, e.g. 0, 500M, 10G".into(),
            Kind::Seconds { min, max } => {
                format!("seconds from {min} to {max}, e.g. 10, 2.5, \"10s\", \"500ms\"")
            }
            Kind::Bool => "true, false".into(),
            Kind::Zerocopy => "none, sendfile, msg".into(),
            Kind::Affinity => {
                "none, same, or CLIENT_CORE/SERVER_CORE such as 0/1 (cores from 0 to 1023)".into()
            }
            Kind::Tool => Tool::ALL.map(Tool::as_str).join(", "),
        }
    }

    /// Whether this key may appear in a scenario of `kind`.
    pub fn applies_to(self, kind: ScenarioKind) -> bool {
        use ScenarioKind as S;
        match self {
            Key::Workload | Key::Mtu | Key::Duration | Key::Omit | Key::Tool => true,
            Key::Placement => kind != S::Baseline,
            Key::Path => kind == S::RrLatency,
            Key::Services => matches!(kind, S::PodToService | S::HttpReplicas),
            Key::Pods | Key::Policies => kind == S::PodToPodPolicies,
            Key::Replicas | Key::FileSize | Key::Concurrency => kind == S::HttpReplicas,
            Key::Streams
            | Key::Direction
            | Key::Length
            | Key::Mss
            | Key::Rate
            | Key::RrSize
            | Key::Nodelay
            | Key::Zerocopy
            | Key::Affinity
            | Key::Window => kind != S::HttpReplicas,
        }
    }

    /// Whether the key changes what a workload does (keys that do not are dropped from
    /// points of that workload, so sweeping them does not duplicate points).
    pub fn relevant_for(self, workload: WorkloadKind) -> bool {
        match self {
            Key::Streams
            | Key::Direction
            | Key::Length
            | Key::Omit
            | Key::Affinity
            | Key::Window => workload.is_stream(),
            // netload paces UDP only; TCP streams run as fast as the path allows.
            Key::Rate => workload == WorkloadKind::Udp,
            Key::Mss | Key::Nodelay | Key::Zerocopy => workload == WorkloadKind::Tcp,
            Key::RrSize => workload.is_rr(),
            Key::FileSize | Key::Concurrency => workload == WorkloadKind::Http,
            _ => true,
        }
    }

    /// Scenario keys listed for `kind` in error messages.
    pub fn names_for(kind: ScenarioKind) -> String {
        Key::ALL
            .into_iter()
            .filter(|k| k.applies_to(kind))
            .map(Key::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed parameter value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A workload name.
    Workload(WorkloadKind),
    /// inter or intra.
    Placement(Placement),
    /// direct or service.
    Path(PathKind),
    /// forward, reverse or bidir.
    Direction(Direction),
    /// A count.
    Count(u64),
    /// A size, bytes.
    Bytes(u64),
    /// Bits per second.
    Rate(u64),
    /// Seconds.
    Seconds(f64),
    /// On or off.
    Bool(bool),
    /// A zero-copy mode.
    Zerocopy(Zerocopy),
    /// Client and server core of the stream threads; `None`: not pinned.
    Affinity(Option<Affinity>),
    /// A traffic generator.
    Tool(Tool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Workload(w) => f.write_str(w.as_str()),
            Value::Placement(p) => f.write_str(p.as_str()),
            Value::Path(p) => f.write_str(p.as_str()),
            Value::Direction(d) => f.write_str(direction_name(d)),
            Value::Count(n) => write!(f, "{n}"),
            Value::Bytes(b) => write!(f, "{}", crate::scenario::Bytes(b)),
            Value::Rate(r) => write!(f, "{}", crate::scenario::BitsPerSec(r)),
            Value::Seconds(s) => write!(f, "{s}s"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Zerocopy(z) => f.write_str(z.as_str()),
            Value::Affinity(None) => f.write_str("none"),
            Value::Affinity(Some(Affinity::SameCore)) => f.write_str("same"),
            Value::Affinity(Some(Affinity::Cores(c, s))) => write!(f, "{c}/{s}"),
            Value::Tool(t) => f.write_str(t.as_str()),
        }
    }
}

/// Name of a direction in suite files.
pub fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Forward => "forward",
        Direction::Reverse => "reverse",
        Direction::Bidir => "bidir",
    }
}

/// A scalar as written in a suite file or on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Raw<'a> {
    /// A string (CLI values are always strings).
    Str(&'a str),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// Parses one raw value for `key`; the error says what is wrong (the caller adds where
/// and what is allowed).
pub fn parse_value(key: Key, raw: Raw<'_>) -> Result<Value, String> {
    match key.kind() {
        Kind::Workload => {
            let s = expect_str(raw)?;
            WorkloadKind::parse(s)
                .map(Value::Workload)
                .ok_or_else(|| format!("unknown workload `{s}`"))
        }
        Kind::Placement => match expect_str(raw)? {
            "inter" => Ok(Value::Placement(Placement::Inter)),
            "intra" => Ok(Value::Placement(Placement::Intra)),
            s => Err(format!("unknown placement `{s}`")),
        },
        Kind::Path => match expect_str(raw)? {
            "direct" => Ok(Value::Path(PathKind::Direct)),
            "service" => Ok(Value::Path(PathKind::Service)),
            s => Err(format!("unknown path `{s}`")),
        },
        Kind::Direction => match expect_str(raw)? {
            "forward" => Ok(Value::Direction(Direction::Forward)),
            "reverse" => Ok(Value::Direction(Direction::Reverse)),
            "bidir" => Ok(Value::Direction(Direction::Bidir)),
            s => Err(format!("unknown direction `{s}`")),
        },
        Kind::Count { min, max } => {
            let n = parse_integer(raw)?;
            in_range(n, min, max).map(Value::Count)
        }
        Kind::Bytes { min, max } => {
            let n = match raw {
                Raw::Str(s) => parse_bytes(s)?,
                other => parse_integer(other)?,
            };
            in_range(n, min, max).map(Value::Bytes)
        }
        Kind::Rate => match raw {
            Raw::Str(s) => parse_rate(s).map(Value::Rate),
            other => parse_integer(other).map(Value::Rate),
        },
        Kind::Seconds { min, max } => {
            let s = match raw {
                Raw::Str(s) => parse_seconds(s)?,
                Raw::Int(i) => i as f64,
                Raw::Float(x) => x,
                Raw::Bool(_) => return Err("expected seconds, found a boolean".into()),
            };
            if s.is_finite() && s >= min && s <= max {
                Ok(Value::Seconds(s))
            } else {
                Err(format!("{s} seconds is out of range"))
            }
        }
        Kind::Bool => match raw {
            Raw::Bool(b) => Ok(Value::Bool(b)),
            Raw::Str("true" | "on" | "yes") => Ok(Value::Bool(true)),
            Raw::Str("false" | "off" | "no") => Ok(Value::Bool(false)),
            Raw::Str(s) => Err(format!("`{s}` is not true or false")),
            Raw::Int(i) => Err(format!("expected true or false, found the number {i}")),
            Raw::Float(x) => Err(format!("expected true or false, found the number {x}")),
        },
        Kind::Zerocopy => match expect_str(raw)? {
            "none" => Ok(Value::Zerocopy(Zerocopy::None)),
            "sendfile" => Ok(Value::Zerocopy(Zerocopy::Sendfile)),
            "msg" => Ok(Value::Zerocopy(Zerocopy::Msg)),
            s => Err(format!("unknown zero-copy mode `{s}`")),
        },
        Kind::Affinity => match expect_str(raw)? {
            "none" => Ok(Value::Affinity(None)),
            "same" => Ok(Value::Affinity(Some(Affinity::SameCore))),
            s => {
                let core = |c: &str| {
                    c.trim()
                        .parse::<u16>()
                        .ok()
                        .filter(|&n| n < 1024)
                        .ok_or_else(|| format!("`{c}` is not a core number in `{s}`"))
                };
                let (c, srv) = s
                    .split_once('/')
                    .ok_or_else(|| format!("`{s}` is not `none`, `same` or CLIENT/SERVER cores"))?;
                Ok(Value::Affinity(Some(Affinity::Cores(core(c)?, core(srv)?))))
            }
        },
        Kind::Tool => {
            let s = expect_str(raw)?;
            Tool::parse(s)
                .map(Value::Tool)
                .ok_or_else(|| format!("unknown tool `{s}`"))
        }
    }
}

fn expect_str(raw: Raw<'_>) -> Result<&str, String> {
    match raw {
        Raw::Str(s) => Ok(s),
        Raw::Int(i) => Err(format!("expected a name, found the number {i}")),
        Raw::Float(x) => Err(format!("expected a name, found the number {x}")),
        Raw::Bool(b) => Err(format!("expected a name, found {b}")),
    }
}

fn parse_integer(raw: Raw<'_>) -> Result<u64, String> {
    match raw {
        Raw::Int(i) => u64::try_from(i).map_err(|_| format!("{i} is negative")),
        Raw::Str(s) => s
            .trim()
            .replace('_', "")
            .parse::<u64>()
            .map_err(|_| format!("`{s}` is not a non-negative integer")),
        Raw::Float(x) => Err(format!("{x} is not an integer")),
        Raw::Bool(b) => Err(format!("expected an integer, found {b}")),
    }
}

fn in_range(n: u64, min: u64, max: u64) -> Result<u64, String> {
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} is out of range"))
    }
}

fn split_unit(s: &str) -> (&str, &str) {
    let s = s.trim();
    let at = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(s.len());
    (&s[..at], s[at..].trim())
}

/// Parses `1500`, `64KiB`, `64K` (binary), `10kB`, `10MB`, `1GB` (decimal) into bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let (num, unit) = split_unit(s);
    let mult: u64 = match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit `{other}` in `{s}`")),
    };
    let n: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{s}` is not a size"))?;
    Ok((n * mult as f64).round() as u64)
}

/// Parses `0`, `100000`, `500M`, `10G`, `1.5Gbit` (decimal) into bits per second.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let (num, unit) = split_unit(s);
    let unit = unit.trim_end_matches("bit").trim_end_matches("bps");
    let mult: u64 = match unit {
        "" => 1,
        "K" | "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        other => return Err(format!("unknown rate unit `{other}` in `{s}`")),
    };
    let n: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{s}` is not a rate"))?;
    Ok((n * mult as f64).round() as u64)
}

/// Parses `10`, `2.5`, `10s`, `500ms`, `2m` into seconds.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let (num, unit) = split_unit(s);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration"))?;
    match unit {
        "" | "s" => Ok(n),
        "ms" => Ok(n / 1000.0),
        "m" | "min" => Ok(n * 60.0),
        other => Err(format!("unknown time unit `{other}` in `{s}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_bytes("64KiB"), Ok(65_536));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert_eq!(parse_bytes("1400"), Ok(1400));
        assert!(parse_bytes("3 parsecs").is_err());
        assert_eq!(parse_rate("10G"), Ok(10_000_000_000));
        assert_eq!(parse_rate("500Mbit"), Ok(500_000_000));
        assert_eq!(parse_seconds("500ms"), Ok(0.5));
        assert_eq!(parse_seconds("2m"), Ok(120.0));
    }

    #[test]
    fn values_check_ranges_and_names() {
        assert_eq!(
            parse_value(Key::Services, Raw::Int(100)),
            Ok(Value::Count(100))
        );
        assert!(parse_value(Key::Services, Raw::Int(-1)).is_err());
        assert!(parse_value(Key::Streams, Raw::Int(0)).is_err());
        assert!(parse_value(Key::Workload, Raw::Str("sctp")).is_err());
        assert_eq!(
            parse_value(Key::Duration, Raw::Str("2s")),
            Ok(Value::Seconds(2.0))
        );
        assert_eq!(
            parse_value(Key::FileSize, Raw::Str("10MB")),
            Ok(Value::Bytes(10_000_000))
        );
        assert_eq!(
            parse_value(Key::Tool, Raw::Str("iperf3")),
            Ok(Value::Tool(Tool::Iperf3))
        );
        assert!(parse_value(Key::Tool, Raw::Str("iperf2")).is_err());
        assert_eq!(
            parse_value(Key::Nodelay, Raw::Bool(true)),
            Ok(Value::Bool(true))
        );
        assert_eq!(
            parse_value(Key::Zerocopy, Raw::Str("sendfile")),
            Ok(Value::Zerocopy(Zerocopy::Sendfile))
        );
    }

    #[test]
    fn every_key_round_trips_its_name() {
        for k in Key::ALL {
            assert_eq!(Key::parse(k.name()), Some(k));
        }
    }
}
