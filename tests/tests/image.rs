//! The x86_64 image as a Kubernetes pod uses it, with podman standing in for the kubelet:
//! manifests/image/build.sh builds the OCI archive; `podman load` reads it; the image's
//! `install /cuda-fault` (read-only, uid 65532, no capabilities: the init container) fills a
//! named volume (the emptyDir); a worker image assembled FROM scratch from the fake CUDA stack
//! preloads the shim from that volume and reads the toggle in a host directory (the hostPath
//! /host-fault) that the image's own `enable`, `disable` and `clean` write (uid 0, no
//! capabilities: the node Job). The image holds exactly the helper, the shim and the static
//! generator of the injection Component, which runs from the image with `--entrypoint` and
//! prints what the tested generator prints.
//!
//! Everything runs in a podman store of this test process (its own --root, --runroot, --tmpdir
//! and containers.conf under a scratch directory), removed at the end, also on failure. Needs
//! buildah, podman and runc (apt), cargo-zigbuild (pip) and the rustup targets build.sh uses;
//! fails, never skips, without them.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use cuda_fault_tests::containers::{build_worker, walk, Cluster, Podman, EMPTYDIR, HOSTPATH, LOCKED_DOWN, T, TOGGLE};
use cuda_fault_tests::{finish, fixture, run_image_build, scratch_dir, workspace_root, Run};
#[test]
fn the_image_installs_the_shim_and_its_commands_switch_faults_in_a_worker_pod() {
    let scratch = scratch_dir("image");
    // `scratch` (and the podman store inside it) is removed when it goes out of scope.
    let podman = Podman::new(&scratch.join("podman"));
    let id = std::process::id();

    // The image, as CI builds it.
    let archive = scratch.join("cuda-fault-x86_64.tar");
    let started = Instant::now();
    let printed = run_image_build("x86_64", &[&archive.display().to_string()], &[]);
    eprintln!("build.sh x86_64: {:.1} s", started.elapsed().as_secs_f64());
    let (built_name, printed_archive) = printed.split_once(' ').expect("build.sh prints IMAGE ARCHIVE");
    assert_eq!(Path::new(printed_archive), archive);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(built_name, format!("ghcr.io/cuda-fault/cuda-fault:{version}"));
    let loaded = podman.ok(&["load", "--input", &archive.display().to_string()]);
    assert!(loaded.stdout.lines().any(|l| l == format!("Loaded image: {built_name}")), "{}", loaded.describe());
    let image = format!("localhost/cuda-fault-image-test-{id}:x86_64");
    podman.ok(&["tag", built_name, &image]);

    let size = podman.ok(&["image", "inspect", "--format", "{{.Size}}", &image]).stdout.trim().to_string();
    eprintln!("image size: {size} bytes");

    // (c) The image: exactly the three files, the helper as entrypoint, uid 65532.
    let inspect = |format: &str| podman.ok(&["image", "inspect", "--format", format, &image]).stdout.trim().to_string();
    assert_eq!(inspect("{{json .Config.Entrypoint}}"), r#"["/usr/local/bin/cuda-fault"]"#);
    assert_eq!(inspect("{{.Config.User}}"), "65532:65532");
    assert_eq!(inspect("{{json .Config.Cmd}}"), "null");
    assert_eq!(inspect("{{.Os}}/{{.Architecture}}"), "linux/amd64");
    let mounted = PathBuf::from(podman.ok(&["image", "mount", &image]).stdout.trim());
    let (mut files, mut dirs) = (BTreeSet::new(), BTreeSet::new());
    walk(&mounted, &mounted, &mut files, &mut dirs);
    let shipped_shim = std::fs::read(mounted.join("usr/local/bin/cuda_intercept.so")).unwrap();
    podman.ok(&["image", "unmount", &image]);
    assert_eq!(
        files,
        BTreeSet::from(
            ["/usr/local/bin/cuda-fault", "/usr/local/bin/cuda-fault-kustomize", "/usr/local/bin/cuda_intercept.so"]
                .map(String::from)
        ),
        "the image must hold the helper, the generator and the shim, and nothing else"
    );
    assert_eq!(dirs, BTreeSet::from(["/usr", "/usr/local", "/usr/local/bin"].map(String::from)));
    // No shell to run.
    let r = podman.run(&["run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", &image, "-c", "true"]);
    assert!(!r.success(), "a shell ran in the image:\n{}", r.describe());

    // The generator, as a user without a Rust toolchain runs it: the rendered workloads on stdin
    // of `podman run -i --entrypoint /usr/local/bin/cuda-fault-kustomize IMAGE generate`. It
    // prints exactly the checked-in example (which another test keeps equal to the generator's).
    let example = workspace_root().join("kustomize/examples/dgd-flow");
    let rendered = Command::new("kubectl").arg("kustomize").arg(example.join("my-app")).output().expect("run kubectl");
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let mut generate = podman.command(&[
        "run",
        "-i",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "/usr/local/bin/cuda-fault-kustomize",
        &image,
        "generate",
        "--envfrom-without-ld-preload",
        "hf-token-secret",
    ]);
    let mut child = generate.stdin(Stdio::piped()).spawn().expect("run the generator in the image");
    child.stdin.take().unwrap().write_all(&rendered.stdout).unwrap();
    let r = finish(child, T);
    assert!(r.success(), "{}", r.describe());
    assert_eq!(r.stdout, std::fs::read_to_string(example.join("my-app-cuda-fault/kustomization.yaml")).unwrap());

    // (a) The init container fills the emptyDir.
    let volume = format!("cuda-fault-image-test-{id}");
    podman.ok(&["volume", "create", &volume]);
    let mount_rw = format!("{volume}:{EMPTYDIR}");
    let mut install = vec!["run", "--rm", "--network", "none"];
    install.extend(LOCKED_DOWN);
    install.extend(["-v", &mount_rw, &image, "install", EMPTYDIR]);
    let started = Instant::now();
    let r = podman.ok(&install);
    let copy_time = started.elapsed();
    eprintln!("init container (podman run ... install): {:.3} s", copy_time.as_secs_f64());
    assert_eq!(
        r.lines(),
        [format!(
            "installed /usr/local/bin/cuda_intercept.so -> /cuda-fault/cuda_intercept.so ({} bytes)",
            shipped_shim.len()
        )],
        "{}",
        r.describe()
    );
    let volume_dir =
        PathBuf::from(podman.ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", &volume]).stdout.trim());
    let installed = volume_dir.join("cuda_intercept.so");
    assert_eq!(std::fs::read(&installed).unwrap(), shipped_shim, "the installed shim differs from the image's");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&installed).unwrap().permissions().mode() & 0o7777, 0o755);
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&installed).unwrap().uid(), 65532, "the init container ran as another user");

    // (b) The worker pod: read-only, non-root, the emptyDir read-only, the node's directory.
    let worker = format!("localhost/cuda-fault-worker-test-{id}:latest");
    let workload = fixture("workload");
    build_worker(&podman, &scratch.join("worker"), &worker, &workload, &installed);
    let host_dir = scratch.join("host-fault");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::set_permissions(&host_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let host_toggle = host_dir.join("cuda_fault_enabled");
    let host_mount = format!("{}:{HOSTPATH}", host_dir.display());
    let mount_ro = format!("{volume}:{EMPTYDIR}:ro");
    let preload = format!("LD_PRELOAD={EMPTYDIR}/cuda_intercept.so");
    let workload_path = workload.display().to_string();
    let run_worker = || {
        podman.run(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--user",
            "1000:1000",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "-v",
            &mount_ro,
            "-v",
            &host_mount,
            "-e",
            &preload,
            &worker,
            &workload_path,
            "3",
        ])
    };
    // The node Job: the image's helper on the node's directory (Cluster::node_job adds --file).
    let cluster = Cluster::new(&podman, image.clone(), worker.clone(), &workload);
    let node_job = |args: &[&str]| cluster.node_job(&host_dir, args);
    let assert_passes = |r: &Run, when: &str| {
        assert!(r.success() && r.has_line("workload ok"), "{when}: expected a clean run:\n{}", r.describe());
        assert_eq!(r.lines(), ["devices 2", "step 0 ok", "step 1 ok", "step 2 ok", "workload ok"], "{when}");
    };

    // The toggle is absent: faults off, and the shim says nothing.
    let r = run_worker();
    assert_passes(&r, "no toggle file");
    assert_eq!(r.stderr, "", "the shim must be silent with faults off:\n{}", r.describe());

    // The shim really is loaded in the worker (not just present): the same worker with the
    // environment switch on fails.
    let r = podman.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--read-only",
        "--user",
        "1000:1000",
        "-v",
        &mount_ro,
        "-v",
        &host_mount,
        "-e",
        &preload,
        "-e",
        "CUDA_FAULT_INJECTION_ENABLED=1",
        "-e",
        "CUDA_XID_TYPE=79",
        &worker,
        &workload_path,
        "3",
    ]);
    assert!(r.has_line("FAIL cudaGetDeviceCount cudaErrorNoDevice 100"), "{}", r.describe());

    // The node Job enables XID 48.
    let r = node_job(&["enable", "--xid", "48"]);
    assert!(r.stdout.starts_with(&format!("wrote \"1 48\" to {TOGGLE}")), "{}", r.describe());
    assert_eq!(std::fs::read_to_string(&host_toggle).unwrap().trim_end(), "1 48");
    let r = run_worker();
    assert_eq!(r.status, 1, "{}", r.describe());
    // XID 48 keeps the GPU enumerated: the device count answers, selecting it fails.
    assert!(r.has_line("FAIL cudaSetDevice cudaErrorECCUncorrectable 214"), "{}", r.describe());
    assert!(
        r.stderr.lines().any(|l| l == "[XID 48 SIM] cudaSetDevice -> cudaErrorECCUncorrectable (214)"),
        "{}",
        r.describe()
    );

    // disable: the file says 0, the worker passes again.
    let r = node_job(&["disable"]);
    assert!(r.stdout.starts_with(&format!("wrote \"0\" to {TOGGLE}")), "{}", r.describe());
    assert_passes(&run_worker(), "after disable");

    // clean: the file is gone, the worker passes.
    node_job(&["clean"]);
    assert!(!host_toggle.exists(), "clean left {}", host_toggle.display());
    let leftovers: Vec<_> = std::fs::read_dir(&host_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.is_empty(), "files left in the host directory: {leftovers:?}");
    let r = run_worker();
    assert_passes(&r, "after clean");
    assert_eq!(r.stderr, "", "{}", r.describe());
}
