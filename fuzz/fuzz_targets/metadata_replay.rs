//! Any bytes as `__cluster_metadata/metadata.log`: replaying it at start must
//! open the store or refuse with an error, never panic, hang or allocate
//! without bound. Seeds:
//! fuzz/seeds/metadata/ (logs written by a real broker).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rill_metadata::store::MetadataStore;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("rill-fuzz-metadata-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the fuzz directory can be made");
    std::fs::write(dir.join("metadata.log"), data).expect("the fuzz file can be written");
    if let Ok(store) = MetadataStore::open(&dir, 0) {
        let _ = store.state().topics().count();
    }
    let _ = std::fs::remove_dir_all(&dir);
});
