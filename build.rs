//! Embeds libtorch's library directory as an rpath, so binaries, tests and
//! examples find libtorch's shared libraries without LD_LIBRARY_PATH, and
//! compiles `src/script/shim.cpp` (TorchScript buffers and forward in a chosen
//! mode, which tch does not expose) against the same libtorch.
//! torch-sys (`links = "tch"`) exports the directory as DEP_TCH_LIBTORCH_LIB;
//! this crate (`links = "tch_landscape"`) passes it on to its dependents as
//! DEP_TCH_LANDSCAPE_LIBTORCH_LIB.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    println!("cargo:rerun-if-env-changed=LIBTORCH_INCLUDE");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=src/script/shim.cpp");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("torch-sys did not report libtorch's directory (DEP_TCH_LIBTORCH_LIB); set LIBTORCH (README, \"Set-up\")");
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    // For crates that depend on this one: their build script reads it as
    // DEP_TCH_LANDSCAPE_LIBTORCH_LIB and embeds it as their own rpath (a
    // dependency's link arguments do not reach their binaries).
    println!("cargo:libtorch_lib={lib}");
    // As torch-sys does: LIBTORCH_INCLUDE when set, else next to lib/.
    let root = match std::env::var("LIBTORCH_INCLUDE") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => PathBuf::from(&lib).join(".."),
    };
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("src/script/shim.cpp")
        .compile("tch_landscape_shim");
}
