//! `cnibench run --resume DIR`: an interrupted run continued with the suite, rule and
//! backend settings its `meta.json` recorded. What the run recorded wins over the flags;
//! the flags fill in what it did not record (where the tools are, the kubeconfig, the
//! fake's seed).

use std::collections::BTreeMap;
use std::path::Path;

use clap::ValueEnum as _;

use super::args::{BackendArgs, BackendKind};
use super::session::Session;
use super::{AppError, BackendSettings, Result};
use crate::backend::Cancel;
use crate::backend::kube::adapter::KubeOptions;
use crate::backend::kube::objects::ServiceMode;
use crate::results::{LoadedRun, RunDir};

/// The backend settings of a run of backend `backend` that recorded `tools` in its
/// `meta.json` (in directory `dir`, for errors), with the flags `a` for the rest.
pub fn settings(
    dir: &Path,
    backend: &str,
    tools: &BTreeMap<String, String>,
    a: &BackendArgs,
) -> Result<BackendSettings> {
    let kind = match backend {
        "fake" => BackendKind::Fake,
        "loopback" => BackendKind::Loopback,
        "lab" => BackendKind::Lab,
        "kube" => BackendKind::Kube,
        other => {
            return Err(AppError::Invalid(format!(
                "{}: cannot resume a run of backend `{other}` with this cnibench",
                dir.display()
            )));
        }
    };
    // The recorded nodes replace `--nodes` before it is read: the flag may name nodes in
    // a form the backend would refuse (kube names for a lab run).
    let recorded_nodes = match kind {
        BackendKind::Lab => tools.get("lab_nodes"),
        BackendKind::Kube => tools.get("kube_nodes"),
        BackendKind::Fake | BackendKind::Loopback => None,
    };
    let settings = BackendSettings::with_nodes(kind, a, recorded_nodes.map_or(&a.nodes, |n| n))?;
    Ok(match settings {
        BackendSettings::Lab(opts, paths) => BackendSettings::Lab(opts.restore(tools)?, paths),
        BackendSettings::Kube(opts) => BackendSettings::Kube(restore_kube(opts, tools)?),
        other => other,
    })
}

/// The kube options with the image, service mode and given namespace a run recorded put
/// back.
fn restore_kube(mut o: KubeOptions, tools: &BTreeMap<String, String>) -> Result<KubeOptions> {
    if let Some(v) = tools.get("kube_image") {
        o.image.clone_from(v);
    }
    if let Some(v) = tools.get("kube_service_mode") {
        o.service_mode = ServiceMode::from_str(v, false).map_err(AppError::Invalid)?;
    }
    // A run in a namespace created beforehand continues there (its objects are there).
    if tools
        .get("kube_namespace_given")
        .is_some_and(|v| v == "true")
    {
        o.namespace = tools.get("kube_namespace").cloned();
    }
    Ok(o)
}

/// Opens the run in `dir` to continue it: its records so far, its writer and its backend
/// (settings from [`settings`]).
pub fn open(dir: &Path, a: &BackendArgs, cancel: &Cancel) -> Result<Session> {
    let (run_dir, loaded, writer) = RunDir::resume(dir)?;
    for w in &loaded.parsed.warnings {
        eprintln!("warning: {}: {w}", dir.display());
    }
    let settings = settings(dir, &loaded.meta.backend, &loaded.meta.tools, a)?;
    let backend = settings.open(&loaded.meta.run_id, &loaded.meta.points, cancel)?;
    let LoadedRun { meta, parsed, .. } = loaded;
    eprintln!(
        "resuming {} ({} records so far)",
        run_dir.path.display(),
        parsed.records.len()
    );
    Ok(Session {
        dir: run_dir,
        meta,
        prior: parsed.records,
        writer,
        backend,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::backend::lab::adapter::LabOptions;
    use crate::backend::lab::{PolicyMode, Profile, ProxyMode};

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        backend: BackendArgs,
    }

    fn flags(args: &[&str]) -> BackendArgs {
        Flags::parse_from(std::iter::once("cnibench").chain(args.iter().copied())).backend
    }

    fn tools(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn a_lab_run_gets_back_the_options_it_recorded() {
        let recorded = LabOptions {
            profile: Profile::Vxlan,
            proxy: ProxyMode::Nftables,
            policy_mode: PolicyMode::Nftables,
            mtu: 9000,
            nodes: 3,
        };
        let mut t = recorded.recorded();
        t.insert("netload".into(), "netload 0.1.0".into());
        // Flags given now lose against what the run recorded, also a --nodes the lab
        // could not read.
        let a = flags(&["--profile", "routed", "--mtu", "1400", "--nodes", "w1,w2"]);
        match settings(Path::new("r"), "lab", &t, &a).unwrap() {
            BackendSettings::Lab(opts, paths) => {
                assert_eq!(opts, recorded);
                assert_eq!(paths.netload, None);
            }
            other => panic!("a lab run resumes on the lab, not {other:?}"),
        }
    }

    #[test]
    fn a_run_that_recorded_nothing_keeps_the_flags() {
        let a = flags(&["--profile", "vxlan", "--netload", "/opt/netload"]);
        match settings(Path::new("r"), "lab", &BTreeMap::new(), &a).unwrap() {
            BackendSettings::Lab(opts, paths) => {
                assert_eq!(opts.profile, Profile::Vxlan);
                assert_eq!(opts.nodes, 2);
                assert_eq!(paths.netload.as_deref(), Some(Path::new("/opt/netload")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_kube_run_gets_back_its_nodes_image_and_service_mode() {
        let t = tools(&[
            ("kube_nodes", "w1,w2"),
            ("kube_image", "registry.example/netload:2"),
            ("kube_service_mode", "selector"),
            ("kube_context", "ctx"),
        ]);
        let a = flags(&["--kubeconfig", "/k/config", "--concurrency", "8"]);
        match settings(Path::new("r"), "kube", &t, &a).unwrap() {
            BackendSettings::Kube(o) => {
                assert_eq!(o.nodes, ["w1", "w2"]);
                assert_eq!(o.image, "registry.example/netload:2");
                assert_eq!(o.service_mode, ServiceMode::Selector);
                assert_eq!(o.kubeconfig.as_deref(), Some(Path::new("/k/config")));
                assert_eq!(o.tuning.concurrency, 8);
                assert_eq!(o.namespace, None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_kube_run_in_a_given_namespace_continues_there() {
        let mut t = tools(&[
            ("kube_namespace", "team-a"),
            ("kube_namespace_given", "true"),
        ]);
        let namespace =
            |t: &BTreeMap<String, String>| match settings(Path::new("r"), "kube", t, &flags(&[]))
                .unwrap()
            {
                BackendSettings::Kube(o) => o.namespace,
                other => panic!("{other:?}"),
            };
        assert_eq!(namespace(&t).as_deref(), Some("team-a"));
        // Its own namespace is recreated from the run id, not taken as given.
        t.remove("kube_namespace_given");
        assert_eq!(namespace(&t), None);
    }

    #[test]
    fn the_fake_keeps_its_seed_from_the_flags() {
        match settings(
            Path::new("r"),
            "fake",
            &BTreeMap::new(),
            &flags(&["--seed", "7"]),
        )
        .unwrap()
        {
            BackendSettings::Fake(f) => assert_eq!(f.seed, 7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn what_cannot_be_restored_is_named() {
        let a = flags(&[]);
        let e = settings(Path::new("runs/x"), "cloud", &BTreeMap::new(), &a)
            .unwrap_err()
            .to_string();
        assert!(e.contains("runs/x") && e.contains("`cloud`"), "{e}");
        let e = settings(Path::new("r"), "lab", &tools(&[("lab_proxy", "ebpf")]), &a)
            .unwrap_err()
            .to_string();
        assert!(e.contains("ebpf"), "{e}");
        let e = settings(Path::new("r"), "lab", &tools(&[("lab_mtu", "big")]), &a)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lab_mtu") && e.contains("big"), "{e}");
    }
}
