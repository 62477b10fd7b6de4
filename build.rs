// Records the git commit the binary is built from (HEAD; uncommitted changes are not marked): provenance.json of
// every run says it. `unknown` outside a git checkout.
use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MFD_GIT_COMMIT={commit}");
    // Rerun when HEAD moves: HEAD itself (a checkout) and the branch it names (a commit). A worktree keeps HEAD in
    // its own git dir and the branches in the common one.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let (Some(dir), Some(common)) = (git(&["rev-parse", "--git-dir"]), git(&["rev-parse", "--git-common-dir"])) {
        println!("cargo:rerun-if-changed={}", root.join(&dir).join("HEAD").display());
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", root.join(&common).join(branch).display());
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
