//! `cnibench render`: the objects the kube backend applies, as YAML files (pure).
//!
//! Layout under the output directory (every file deterministic: a fixed run id, fixed
//! node names, objects in creation order):
//!
//! - `rbac.yaml`: the ClusterRole a run needs ([`super::rbac`]);
//! - `<suite>/NN-<point>.yaml`: one file per point, in suite order: namespace, server,
//!   client, filler Deployment, measured service;
//! - `<suite>/scale/services-<k>.yaml`, `<suite>/scale/policies-<n>.yaml`: the filler
//!   services (with their EndpointSlices) and the policies, shared by every point with
//!   the same count. A point file names the scale files applied with it in its header.
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

/// Renders `points` of suite `suite` with `settings`: `rbac.yaml`, one file per point and
/// the shared scale files, sorted by path.
pub fn render(
    suite: &str,
    points: &[Point],
    settings: &Settings,
) -> Result<Vec<RenderedFile>, RenderError> {
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    files.insert(
        "rbac.yaml".into(),
        format!(
            "# The ClusterRole and binding a `cnibench run --backend kube` needs (generated by\n# `cnibench render`; bind it to the user or service account that runs cnibench).\n{}{}",
            document("clusterrole", &rbac::cluster_role())?,
            document("clusterrolebinding", &rbac::cluster_role_binding("cnibench"))?
        ),
    );
    let width = points.len().to_string().len().max(2);
    for (i, p) in points.iter().enumerate() {
        let o = objects::point_objects(settings, p);
        let (own, shared) = point_documents(&o)?;
        let mut head = format!(
            "# cnibench render: suite {suite}, point {}\n# run id {}, image {}, nodes {} / {}, service mode {}\n",
            p.id,
            settings.run,
            settings.image,
            settings.server_node,
            settings.client_node,
            settings.service_mode.as_str()
        );
        for (name, text) in shared {
            let _ = writeln!(head, "# applied with this point: scale/{name}");
            files.insert(format!("{suite}/scale/{name}"), text);
        }
        files.insert(
            format!("{suite}/{:0width$}-{}.yaml", i + 1, slug(&p.id)),
            head + &own,
        );
    }
    Ok(files
        .into_iter()
        .map(|(path, text)| RenderedFile { path, text })
        .collect())
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
    }
}
