//! `cnibench render`: the objects the kube backend applies, as YAML files (pure).
//!
//! Layout under the output directory (every file deterministic: a fixed run id, fixed
//! node names, objects in creation order):
//!
//! - `rbac.yaml`: the ClusterRole a run needs ([`super::rbac`]);
//! - `<suite>/NN-<point>.yaml`: one file per point, in suite order: namespace, server,
//!   client, outsider (points with policies), filler Deployment, measured service;
//! - `<suite>/scale/services-<k>.yaml`, `<suite>/scale/policies-<n>.yaml`: the filler
//!   services (with their EndpointSlices) and the policies, shared by every point with
//!   the same count. A point file's header names the scale files applied with it and
//!   counts the objects of each kind the point applies.
//!
//! [`render`] writes every point; [`render_sample`] (`render --sample`) writes the points
//! [`super::sample::select`] chooses, each file byte for byte as [`render`] writes it:
//! that sample is what manifests/ holds.
//!
//! Why shared scale files: the `thesis` suite has ten points with 10 000 services and two
//! with 20 000 policies; written into every point file they would be about 90 MB of nearly
//! identical YAML, shared they are a few MB (see docs/kube.md for the measured size). Every
//! document stays a plain, complete Kubernetes object (no templates, no `List` wrappers),
//! so `kubectl apply -f` and schema validation take the files as they are.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::objects::{self, PointObjects, Settings};
use super::rbac;
use super::sample::{self, Counts, Pick};
use crate::scenario::Point;

/// The run id `render` uses (so the output does not depend on the clock).
pub const RENDER_RUN_ID: &str = "render";
/// Node names `render` places pods on unless told otherwise.
pub const RENDER_NODES: [&str; 2] = ["worker-1", "worker-2"];

/// One rendered file: path relative to the output directory, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Relative path with `/` separators.
    pub path: String,
    /// YAML text.
    pub text: String,
}

/// Failures of rendering.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// An object could not be serialized.
    #[error("cannot serialize {what} as YAML: {message}")]
    Yaml {
        /// The object.
        what: String,
        /// The serializer's message.
        message: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// One YAML document (`---` first, so documents concatenate into one stream).
pub fn document<T: Serialize>(what: &str, obj: &T) -> Result<String, RenderError> {
    let text = serde_saphyr::to_string(obj).map_err(|e| RenderError::Yaml {
        what: what.into(),
        message: e.to_string(),
    })?;
    let text = text.strip_prefix("---\n").unwrap_or(&text);
    Ok(format!("---\n{text}"))
}

/// A file-name slug of a point id: `pod-to-service/placement=inter,services=10` becomes
/// `pod-to-service_placement-inter_services-10`.
pub fn slug(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        out.push(match c {
            '/' | ',' => '_',
            c if c.is_ascii_alphanumeric() || c == '-' || c == '.' => c,
            _ => '-',
        });
    }
    out
}

fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("?")
}

/// The documents of a point's own file and the scale files it shares (name → text).
fn point_documents(o: &PointObjects) -> Result<(String, Vec<(String, String)>), RenderError> {
    let mut own = String::new();
    own += &document("namespace", &o.namespace)?;
    own += &document("server", &o.server)?;
    own += &document("client", &o.client)?;
    if let Some(p) = &o.outsider {
        own += &document("outsider", p)?;
    }
    if let Some(f) = &o.fillers {
        own += &document("fillers", f)?;
    }
    let mut shared = Vec::new();
    let mut fillers = o.services.as_slice();
    if let Some(m) = o.measured_service() {
        own += &document("measured service", m)?;
        fillers = &o.services[1..];
    }
    if !fillers.is_empty() {
        let mut text = String::new();
        let slices: BTreeMap<&str, _> = o
            .endpoint_slices
            .iter()
            .map(|s| (name_of(&s.metadata), s))
            .collect();
        for svc in fillers {
            let name = name_of(&svc.metadata);
            text += &document(name, svc)?;
            if let Some(slice) = slices.get(name) {
                text += &document(name, slice)?;
            }
        }
        shared.push((format!("services-{}.yaml", fillers.len()), text));
    }
    if !o.policies.is_empty() {
        let mut text = String::new();
        for p in &o.policies {
            text += &document(name_of(&p.metadata), p)?;
        }
        shared.push((format!("policies-{}.yaml", o.policies.len()), text));
    }
    Ok((own, shared))
}

/// The `rbac.yaml` file.
fn rbac_file() -> Result<RenderedFile, RenderError> {
    Ok(RenderedFile {
        path: "rbac.yaml".into(),
        text: format!(
            "# The ClusterRole and binding a `cnibench run --backend kube` needs (generated by\n# `cnibench render`; bind it to the user or service account that runs cnibench).\n{}{}",
            document("clusterrole", &rbac::cluster_role())?,
            document(
                "clusterrolebinding",
                &rbac::cluster_role_binding("cnibench")
            )?
        ),
    })
}

/// The point file of `p` (number `index + 1` of `total` points in suite `suite`) and the
/// scale files it is applied with.
fn point_files(
    suite: &str,
    index: usize,
    total: usize,
    p: &Point,
    o: &PointObjects,
    settings: &Settings,
) -> Result<(RenderedFile, Vec<RenderedFile>), RenderError> {
    let width = total.to_string().len().max(2);
    let (own, shared) = point_documents(o)?;
    let mut head = format!(
        "# cnibench render: suite {suite}, point {}\n# run id {}, image {}, nodes {} / {}, service mode {}\n# objects: {}\n",
        p.id,
        settings.run,
        settings.image,
        settings.server_node,
        settings.client_node,
        settings.service_mode.as_str(),
        Counts::of(o)
    );
    let mut scale = Vec::new();
    for (name, text) in shared {
        let _ = writeln!(head, "# applied with this point: scale/{name}");
        scale.push(RenderedFile {
            path: format!("{suite}/scale/{name}"),
            text,
        });
    }
    let own = RenderedFile {
        path: format!("{suite}/{:0width$}-{}.yaml", index + 1, slug(&p.id)),
        text: head + &own,
    };
    Ok((own, scale))
}

/// Sorted by path, each path once (points share scale files).
fn sorted(files: impl IntoIterator<Item = RenderedFile>) -> Vec<RenderedFile> {
    let files: BTreeMap<String, String> = files.into_iter().map(|f| (f.path, f.text)).collect();
    files
        .into_iter()
        .map(|(path, text)| RenderedFile { path, text })
        .collect()
}

/// Renders `points` of suite `suite` with `settings`: `rbac.yaml`, one file per point and
/// the shared scale files, sorted by path.
pub fn render(
    suite: &str,
    points: &[Point],
    settings: &Settings,
) -> Result<Vec<RenderedFile>, RenderError> {
    let mut files = vec![rbac_file()?];
    for (i, p) in points.iter().enumerate() {
        let o = objects::point_objects(settings, p);
        let (own, scale) = point_files(suite, i, points.len(), p, &o, settings)?;
        files.push(own);
        files.extend(scale);
    }
    Ok(sorted(files))
}

/// What `render --sample` writes, and which points it chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The files, sorted by path; each is byte for byte the file of the same path that
    /// [`render`] writes for the whole suite.
    pub files: Vec<RenderedFile>,
    /// The chosen points (see [`sample::select`]), with their ids.
    pub picks: Vec<(String, Pick)>,
}

/// Renders the [`sample::select`] sample of `points`: `rbac.yaml`, the chosen points'
/// files, and the scale files of the points chosen for their scenario (the largest
/// points' scale files are what the sample leaves out).
pub fn render_sample(
    suite: &str,
    points: &[Point],
    settings: &Settings,
) -> Result<Sample, RenderError> {
    let objects: Vec<PointObjects> = points
        .iter()
        .map(|p| objects::point_objects(settings, p))
        .collect();
    let counts: Vec<(&str, Counts)> = points
        .iter()
        .zip(&objects)
        .map(|(p, o)| (p.scenario.as_str(), Counts::of(o)))
        .collect();
    let picks = sample::select(&counts);
    let mut files = vec![rbac_file()?];
    for pick in &picks {
        let i = pick.index;
        let (own, scale) = point_files(suite, i, points.len(), &points[i], &objects[i], settings)?;
        files.push(own);
        if pick.with_scale_files() {
            files.extend(scale);
        }
    }
    Ok(Sample {
        files: sorted(files),
        picks: picks
            .into_iter()
            .map(|p| (points[p.index].id.clone(), p))
            .collect(),
    })
}

/// The settings `render` uses: run id [`RENDER_RUN_ID`], nodes [`RENDER_NODES`].
pub fn render_settings(image: String, service_mode: objects::ServiceMode) -> Settings {
    Settings {
        run: RENDER_RUN_ID.into(),
        image,
        server_node: RENDER_NODES[0].into(),
        client_node: RENDER_NODES[1].into(),
        service_mode,
        tolerations: Vec::new(),
        namespace: None,
    }
}

/// Writes `files` under `dir` (creating directories), replacing files of the same name.
pub fn write(dir: &Path, files: &[RenderedFile]) -> Result<(), RenderError> {
    for f in files {
        let path = dir.join(&f.path);
        let err = |source| RenderError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        std::fs::write(&path, &f.text).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{expand, presets};

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(
            slug("pod-to-service/placement=inter,services=10"),
            "pod-to-service_placement-inter_services-10"
        );
    }

    #[test]
    fn quick_suite_renders_deterministically() {
        let points = expand(&presets::load("quick").unwrap()).unwrap();
        let s = render_settings("img:1".into(), objects::ServiceMode::EndpointSlice);
        let a = render("quick", &points, &s).unwrap();
        let b = render("quick", &points, &s).unwrap();
        assert_eq!(a, b);
        let paths: Vec<&str> = a.iter().map(|f| f.path.as_str()).collect();
        assert!(paths.contains(&"rbac.yaml"), "{paths:?}");
        assert!(paths.contains(&"quick/scale/services-9.yaml"), "{paths:?}");
        assert!(paths.contains(&"quick/scale/policies-20.yaml"), "{paths:?}");
        let svc = &a
            .iter()
            .find(|f| f.path.ends_with("services-9.yaml"))
            .unwrap()
            .text;
        // Nine services and their nine slices.
        assert_eq!(svc.matches("\n---\n").count() + 1, 18);
        assert!(svc.contains("kind: EndpointSlice"));
        let point = a
            .iter()
            .find(|f| f.path.contains("pod-to-service"))
            .unwrap();
        assert!(
            point
                .text
                .contains("# applied with this point: scale/services-9.yaml")
        );
        assert!(point.text.starts_with("# cnibench render"));
        assert!(
            point.text.contains("\n# objects: server replicas 1, filler pods 0, services 10 (1 measured), EndpointSlices 9, NetworkPolicies 0\n"),
            "{}",
            point.text
        );
    }

    #[test]
    fn a_sample_is_a_subset_of_the_full_render_byte_for_byte() {
        let points = expand(&presets::load("quick").unwrap()).unwrap();
        let s = render_settings("img:1".into(), objects::ServiceMode::EndpointSlice);
        let full: BTreeMap<String, String> = render("quick", &points, &s)
            .unwrap()
            .into_iter()
            .map(|f| (f.path, f.text))
            .collect();
        let sample = render_sample("quick", &points, &s).unwrap();
        // quick has one point per scenario, none large: its sample is all of it.
        assert_eq!(sample.files.len(), full.len());
        for f in &sample.files {
            assert_eq!(full.get(&f.path), Some(&f.text), "{}", f.path);
        }
        assert_eq!(sample.files[0].path, "quick/01-baseline_workload-tcp.yaml");
        assert!(sample.files.iter().any(|f| f.path == "rbac.yaml"));
    }

    /// The thesis sample, point by point (manifests/README.md lists the same).
    #[test]
    fn thesis_sample_is_each_scenario_plus_the_largest_points() {
        let points = expand(&presets::load("thesis").unwrap()).unwrap();
        let s = render_settings("img:1".into(), objects::ServiceMode::EndpointSlice);
        let counts: Vec<(&str, Counts)> = points
            .iter()
            .map(|p| {
                let o = objects::point_objects(&s, p);
                (p.scenario.as_str(), Counts::of(&o))
            })
            .collect();
        let picked: Vec<String> = sample::select(&counts)
            .iter()
            .map(|p| format!("{} {}", points[p.index].id, p.with_scale_files()))
            .collect();
        assert_eq!(
            picked,
            [
                "baseline/workload=tcp true",
                "pod-to-pod/placement=inter,workload=tcp true",
                "pod-to-pod-policies/placement=inter,pods=1000,policies=2000,workload=tcp true",
                "pod-to-pod-policies/placement=inter,pods=10000,policies=20000,workload=tcp false",
                "pod-to-service/placement=inter,services=10,workload=tcp true",
                "http-replicas/placement=inter,replicas=10,services=100 true",
                "http-replicas/placement=inter,replicas=100,services=10000 false",
                "rr-latency/path=service,placement=inter,workload=tcp-rr true",
            ]
        );
    }
}
