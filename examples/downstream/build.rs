//! Lets this crate's binaries find libtorch at run time: tch-landscape passes
//! libtorch's library directory on as DEP_TCH_LANDSCAPE_LIBTORCH_LIB, and an
//! rpath makes LD_LIBRARY_PATH unnecessary.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LANDSCAPE_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
