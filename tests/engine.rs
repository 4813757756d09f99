mod common;
#[allow(unused_imports)]
use common::*;

#[test]
fn adapters_open() {
    for e in gpu_engines() {
        eprintln!("{}", e.describe());
    }
}
