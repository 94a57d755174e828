//! Archive forms `docker load` accepts beyond a plain tar.

mod common;

use common::*;

#[test]
fn compressed_archives_load_like_plain_ones() {
    let img = good_image();
    for (name, archive) in [
        ("gzip", gzip(&img.docker())),
        ("zstd", zstd::encode_all(img.oci(true).as_slice(), 3).unwrap()),
    ] {
        let eng = Engine::new();
        let out = eng.load(&archive);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let images = eng.images();
        assert_eq!(images.len(), 1, "{name}");
        assert_eq!(images[0].0, img.id(), "{name}: image ID");
    }
}
