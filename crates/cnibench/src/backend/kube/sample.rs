//! Which points `cnibench render --sample` writes (pure): a small set that still shows
//! every kind of object each scenario creates and the largest count of each kind.
//!
//! Why a sample: the full `thesis` render is about 22 MB, nearly all of it thousands of
//! filler Services, EndpointSlices and NetworkPolicies that differ only in their index.
//! Committed, every change to an object became a diff of millions of lines. The sample is
//! what manifests/ holds; the full render is produced on demand and schema-validated in CI.
//!
//! The rule, in [`select`]:
//!
//! - per scenario, the point that creates the most kinds of object (fillers, measured
//!   Service, filler Services, EndpointSlices, NetworkPolicies), the fewest objects among
//!   those, the first in suite order among equals: the smallest point that still shows
//!   everything the scenario puts in a cluster;
//! - then, for each count ([`Dimension`]), a point holding the suite's largest value,
//!   chosen greedily so that as few points as possible cover every maximum (one point
//!   with 10 000 Services and 100 replicas covers both). Their scale files (the thousands
//!   of near-identical objects) are not part of the sample; the point's own file names
//!   them and its header line says how many objects of each kind the point applies.

use std::fmt;

use super::objects::PointObjects;

/// How many objects of each kind a point puts in the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Replicas of the server Deployment.
    pub server_replicas: u32,
    /// Pods of the filler Deployment (0: no filler Deployment).
    pub filler_pods: u32,
    /// Services: the measured one (if any) and the fillers.
    pub services: usize,
    /// Whether the first service is the measured one.
    pub measured_service: bool,
    /// EndpointSlices of selectorless filler services.
    pub endpoint_slices: usize,
    /// NetworkPolicies (default deny and allows).
    pub policies: usize,
}

impl Counts {
    /// The counts of `o`.
    pub fn of(o: &PointObjects) -> Self {
        Counts {
            server_replicas: u32::try_from(o.server_replicas()).unwrap_or(0),
            filler_pods: o
                .fillers
                .as_ref()
                .and_then(|d| d.spec.replicas)
                .and_then(|r| u32::try_from(r).ok())
                .unwrap_or(0),
            services: o.services.len(),
            measured_service: o.measured_service().is_some(),
            endpoint_slices: o.endpoint_slices.len(),
            policies: o.policies.len(),
        }
    }

    /// Filler services: every service but the measured one.
    pub fn filler_services(&self) -> usize {
        self.services - usize::from(self.measured_service)
    }

    /// Which optional kinds of object the point creates (the namespace, server and client
    /// are always there).
    fn kinds(&self) -> usize {
        [
            self.filler_pods > 0,
            self.measured_service,
            self.filler_services() > 0,
            self.endpoint_slices > 0,
            self.policies > 0,
        ]
        .into_iter()
        .filter(|&k| k)
        .count()
    }

    /// Objects and pods the point makes the cluster hold: what "smallest" compares.
    fn weight(&self) -> u64 {
        u64::from(self.server_replicas)
            + u64::from(self.filler_pods)
            + (self.services + self.endpoint_slices + self.policies) as u64
    }

    /// The value of one count.
    pub fn get(&self, d: Dimension) -> u64 {
        match d {
            Dimension::ServerReplicas => u64::from(self.server_replicas),
            Dimension::FillerPods => u64::from(self.filler_pods),
            Dimension::Services => self.services as u64,
            Dimension::Policies => self.policies as u64,
        }
    }
}

impl fmt::Display for Counts {
    /// One line for a point file's header, e.g. `server replicas 100, filler pods 0,
    /// services 10000 (1 measured), EndpointSlices 9999, NetworkPolicies 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "server replicas {}, filler pods {}, services {} ({} measured), EndpointSlices {}, NetworkPolicies {}",
            self.server_replicas,
            self.filler_pods,
            self.services,
            u8::from(self.measured_service),
            self.endpoint_slices,
            self.policies
        )
    }
}

/// A count whose largest value in the suite the sample includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dimension {
    /// Server replicas (http-replicas).
    ServerReplicas,
    /// Filler pods (policies).
    FillerPods,
    /// Services, measured and fillers (EndpointSlices follow them).
    Services,
    /// NetworkPolicies.
    Policies,
}

impl Dimension {
    /// Every dimension, in the order a [`Reason::Largest`] lists them.
    pub const ALL: [Dimension; 4] = [
        Dimension::ServerReplicas,
        Dimension::FillerPods,
        Dimension::Services,
        Dimension::Policies,
    ];

    /// Its name in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::ServerReplicas => "server replicas",
            Dimension::FillerPods => "filler pods",
            Dimension::Services => "services",
            Dimension::Policies => "network policies",
        }
    }
}

/// Why a point is in the sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The smallest point of this scenario that creates every kind of object it creates.
    Scenario(String),
    /// It holds the suite's largest value of these counts.
    Largest(Vec<(Dimension, u64)>),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Scenario(s) => write!(f, "scenario {s}: smallest point with every object kind"),
            Reason::Largest(dims) => {
                f.write_str("largest")?;
                for (i, (d, v)) in dims.iter().enumerate() {
                    write!(f, "{} {v} {}", if i == 0 { "" } else { "," }, d.as_str())?;
                }
                Ok(())
            }
        }
    }
}

/// One point of the sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    /// Index of the point in the suite (0-based).
    pub index: usize,
    /// Why it is there (a point can be both a scenario's and a largest one).
    pub reasons: Vec<Reason>,
}

impl Pick {
    /// Whether the point's scale files belong in the sample: only for a scenario's
    /// smallest point; a largest point's scale files are the bulk the sample leaves out.
    pub fn with_scale_files(&self) -> bool {
        self.reasons
            .iter()
            .any(|r| matches!(r, Reason::Scenario(_)))
    }
}

/// The sample of a suite whose points are `(scenario id, counts)` in suite order: picks
/// sorted by index, each point once. See the module doc for the rule.
pub fn select(points: &[(&str, Counts)]) -> Vec<Pick> {
    fn add(picks: &mut Vec<Pick>, index: usize, reason: Reason) {
        match picks.iter_mut().find(|p| p.index == index) {
            Some(p) => p.reasons.push(reason),
            None => picks.push(Pick {
                index,
                reasons: vec![reason],
            }),
        }
    }
    let mut picks: Vec<Pick> = Vec::new();

    let mut scenarios: Vec<&str> = Vec::new();
    for (s, _) in points {
        if !scenarios.contains(s) {
            scenarios.push(s);
        }
    }
    for s in scenarios {
        let best = points
            .iter()
            .enumerate()
            .filter(|(_, (ps, _))| *ps == s)
            // min_by_key keeps the first of equals: suite order breaks ties.
            .min_by_key(|(_, (_, c))| (std::cmp::Reverse(c.kinds()), c.weight()))
            .map(|(i, _)| i);
        if let Some(i) = best {
            add(&mut picks, i, Reason::Scenario(s.to_owned()));
        }
    }

    let maxima: Vec<(Dimension, u64)> = Dimension::ALL
        .into_iter()
        .filter_map(|d| {
            let m = points.iter().map(|(_, c)| c.get(d)).max()?;
            // Every point has one server replica: a maximum of 1 is no scale point.
            (m > 1).then_some((d, m))
        })
        .collect();
    let mut uncovered = maxima;
    while !uncovered.is_empty() {
        let covers = |c: &Counts| -> Vec<(Dimension, u64)> {
            uncovered
                .iter()
                .copied()
                .filter(|&(d, m)| c.get(d) == m)
                .collect()
        };
        // The first point covering the most uncovered maxima; max_by_key would keep the
        // last of equals, hence the reversed index.
        let Some((i, got)) = points
            .iter()
            .enumerate()
            .map(|(i, (_, c))| (i, covers(c)))
            .max_by_key(|(i, got)| (got.len(), std::cmp::Reverse(*i)))
        else {
            break;
        };
        uncovered.retain(|x| !got.contains(x));
        add(&mut picks, i, Reason::Largest(got));
    }

    picks.sort_by_key(|p| p.index);
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(replicas: u32, fillers: u32, services: usize, policies: usize) -> Counts {
        Counts {
            server_replicas: replicas,
            filler_pods: fillers,
            services,
            measured_service: services > 0,
            endpoint_slices: services.saturating_sub(1),
            policies,
        }
    }

    fn indices(picks: &[Pick]) -> Vec<usize> {
        picks.iter().map(|p| p.index).collect()
    }

    #[test]
    fn a_scenario_is_shown_by_its_smallest_point_with_every_kind() {
        // services=1 has no filler services; services=10 is the smallest that has them.
        let points = [
            ("svc", c(1, 0, 1, 0)),
            ("svc", c(1, 0, 10, 0)),
            ("svc", c(1, 0, 100, 0)),
        ];
        let picks = select(&points);
        assert_eq!(picks[0].index, 1);
        assert_eq!(picks[0].reasons[0], Reason::Scenario("svc".into()));
        assert!(picks[0].with_scale_files());
    }

    #[test]
    fn equal_points_pick_the_first_in_suite_order() {
        let points = [("base", c(1, 0, 0, 0)), ("base", c(1, 0, 0, 0))];
        assert_eq!(indices(&select(&points)), [0]);
    }

    #[test]
    fn one_point_covers_as_many_maxima_as_it_holds() {
        let points = [
            ("svc", c(1, 0, 10, 0)),
            ("svc", c(1, 0, 1000, 0)),
            ("http", c(10, 0, 10, 0)),
            ("http", c(100, 0, 10, 0)),
            ("http", c(100, 0, 1000, 0)),
            ("pol", c(1, 100, 0, 200)),
            ("pol", c(1, 1000, 0, 2000)),
        ];
        let picks = select(&points);
        assert_eq!(indices(&picks), [0, 2, 4, 5, 6]);
        let largest: Vec<&Pick> = picks.iter().filter(|p| !p.with_scale_files()).collect();
        assert_eq!(
            largest[0].reasons,
            [Reason::Largest(vec![
                (Dimension::ServerReplicas, 100),
                (Dimension::Services, 1000)
            ])]
        );
        assert_eq!(
            largest[1].reasons,
            [Reason::Largest(vec![
                (Dimension::FillerPods, 1000),
                (Dimension::Policies, 2000)
            ])]
        );
    }

    #[test]
    fn a_scenario_point_that_is_also_largest_keeps_its_scale_files() {
        let points = [("svc", c(1, 0, 1, 0)), ("svc", c(1, 0, 10, 0))];
        let picks = select(&points);
        assert_eq!(indices(&picks), [1]);
        assert_eq!(picks[0].reasons.len(), 2);
        assert!(picks[0].with_scale_files());
    }

    #[test]
    fn no_points_no_sample() {
        assert!(select(&[]).is_empty());
    }

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(
            Reason::Largest(vec![
                (Dimension::ServerReplicas, 100),
                (Dimension::Services, 10)
            ])
            .to_string(),
            "largest 100 server replicas, 10 services"
        );
        assert_eq!(
            c(100, 0, 10, 0).to_string(),
            "server replicas 100, filler pods 0, services 10 (1 measured), EndpointSlices 9, NetworkPolicies 0"
        );
    }
}
