//! Any bytes decoded as any API and version, as a request or a response.
//! Input: byte 0 picks the API, byte 1 the version within its range, byte 2
//! request or response; the rest is the frame. A value that decodes must
//! encode, and its encoding must decode and re-encode to the same bytes. A
//! Produce request must read the same through the broker's in-place reader
//! (`ProduceFrame`): accepted or refused alike, with the same values.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rill_protocol::codec::{Decoder, Encoder};
use rill_protocol::{ApiKey, ProduceFrame, RequestBody, ResponseBody, decode_request_header};

fn encode_request(body: &RequestBody, version: i16) -> Bytes {
    let mut enc = Encoder::new();
    body.encode(&mut enc, version).expect("a decoded request encodes");
    let frame = enc.finish();
    assert_eq!(Ok(frame.buf.len()), body.encoded_len(version));
    frame.buf
}

fn encode_response(body: &ResponseBody, version: i16) -> Bytes {
    let mut enc = Encoder::new();
    body.encode(&mut enc, version).expect("a decoded response encodes");
    let frame = enc.finish();
    assert_eq!(Ok(frame.buf.len()), body.encoded_len(version));
    frame.buf
}

fuzz_target!(|input: &[u8]| {
    let [key_pick, version_pick, side, frame @ ..] = input else {
        return;
    };
    let key = ApiKey::ALL[*key_pick as usize % ApiKey::ALL.len()];
    let (low, high) = key.valid_versions();
    let version = low + (*version_pick as i16 % (high - low + 1));
    let frame = Bytes::copy_from_slice(frame);
    let _ = decode_request_header(&mut Decoder::new(frame.clone()));
    if side & 1 == 0 {
        let mut generated = Decoder::new(frame.clone());
        let decoded = RequestBody::decode(key, version, &mut generated);
        if key == ApiKey::Produce {
            let mut in_place = Decoder::new(frame);
            match (&decoded, ProduceFrame::decode(&mut in_place, version)) {
                (Ok(RequestBody::Produce(expected)), Ok(read)) => {
                    let mut expected = expected.clone();
                    expected.unknown_tagged_fields.clear();
                    for topic in &mut expected.topic_data {
                        topic.unknown_tagged_fields.clear();
                        for partition in &mut topic.partition_data {
                            partition.unknown_tagged_fields.clear();
                        }
                    }
                    assert_eq!(read.to_request(), expected);
                    assert_eq!(in_place.remaining(), generated.remaining());
                }
                (Err(expected), Err(error)) => assert_eq!(expected, &error),
                (expected, read) => panic!(
                    "generated {:?}, in place {:?}",
                    expected.as_ref().map(|_| ()),
                    read.map(|_| ())
                ),
            }
        }
        let Ok(body) = decoded else {
            return;
        };
        let first = encode_request(&body, version);
        let again = RequestBody::decode(key, version, &mut Decoder::new(first.clone()))
            .expect("an encoded request decodes");
        assert_eq!(first, encode_request(&again, version));
    } else {
        let Ok(body) = ResponseBody::decode(key, version, &mut Decoder::new(frame)) else {
            return;
        };
        let first = encode_response(&body, version);
        let again = ResponseBody::decode(key, version, &mut Decoder::new(first.clone()))
            .expect("an encoded response decodes");
        assert_eq!(first, encode_response(&again, version));
    }
});
