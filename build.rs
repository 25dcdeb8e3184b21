//! Embeds libtorch's library directory as an rpath, so binaries, tests and
//! examples find libtorch's shared libraries without LD_LIBRARY_PATH.
//! torch-sys (`links = "tch"`) exports the directory as DEP_TCH_LIBTORCH_LIB.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
