//! Request frames captured from real clients (see tests/golden/README.md)
//! decode completely and re-encode byte for byte.

use std::path::Path;

use bytes::Bytes;
use rill_protocol::codec::{Decoder, Encode, Encoder};
use rill_protocol::{ApiKey, ProduceFrame, Records, RequestBody, decode_request_header};

fn golden_frames() -> Vec<(String, Bytes)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut frames: Vec<(String, Bytes)> = std::fs::read_dir(&dir)
        .expect("tests/golden exists")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "bin"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, Bytes::from(std::fs::read(&path).expect("read")))
        })
        .collect();
    frames.sort();
    frames
}

#[test]
fn captured_client_frames_round_trip_byte_for_byte() {
    let frames = golden_frames();
    assert!(frames.len() >= 49, "only {} golden frames", frames.len());
    for (name, frame) in frames {
        let mut dec = Decoder::new(frame.clone());
        let header = decode_request_header(&mut dec).unwrap_or_else(|e| panic!("{name}: {e}"));
        let key = ApiKey::from_i16(header.request_api_key).expect("known api key");
        let version = header.request_api_version;
        let body =
            RequestBody::decode(key, version, &mut dec).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(dec.remaining(), 0, "{name}: bytes left over");

        let header_version = key.request_header_version(version);
        let mut enc = Encoder::new();
        header.encode(&mut enc, header_version).expect("header");
        body.encode(&mut enc, version).expect("body");
        assert_eq!(
            header.encoded_len(header_version).expect("len")
                + body.encoded_len(version).expect("len"),
            frame.len(),
            "{name}: encoded_len"
        );
        assert_eq!(enc.finish().buf, frame, "{name}: re-encoded bytes differ");

        if let RequestBody::Produce(produce) = &body {
            let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
            for partition in produce.topic_data.iter().flat_map(|t| &t.partition_data) {
                let Some(Records::Bytes(records)) = &partition.records else {
                    panic!("{name}: records missing");
                };
                assert!(!records.is_empty(), "{name}: empty records");
                assert!(
                    frame_range.contains(&(records.as_ptr() as usize)),
                    "{name}: records were copied out of the frame"
                );
            }
            // The broker's reader sees the same request, records in place.
            let mut in_place = Decoder::new(frame.clone());
            decode_request_header(&mut in_place).expect("header");
            let read = ProduceFrame::decode(&mut in_place, version)
                .unwrap_or_else(|e| panic!("{name}: in place: {e}"));
            assert_eq!(in_place.remaining(), 0, "{name}: in place: bytes left over");
            assert_eq!(
                &read.to_request(),
                produce,
                "{name}: in place: values differ"
            );
        }
    }
}
