//! The wire primitives every generated message is built from.
//!
//! `Decoder` reads from one received frame and checks every length it meets
//! against the bytes that remain *before* allocating anything, so a hostile
//! length prefix costs an error, never memory. `Encoder` writes into one
//! buffer and remembers where file regions must be spliced in when the frame
//! is sent, so record bytes on disk never pass through it.

use bytes::{BufMut, Bytes};

use crate::records::{FileRegion, Records};
use crate::uuid::Uuid;

/// Nesting depth allowed while decoding. The deepest Kafka message nests
/// about six structs; the limit guards against specs or callers that recurse.
pub const MAX_DEPTH_DEFAULT: usize = 32;

/// A tagged field this codec does not know, kept so that re-encoding a
/// decoded message loses nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawTaggedField {
    pub tag: u32,
    pub data: Bytes,
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame ended early: {needed} more bytes needed, {remaining} left")]
    Truncated { needed: usize, remaining: usize },
    #[error("{what} claims {claimed} bytes or elements but only {remaining} bytes remain")]
    LengthExceedsRemaining {
        what: &'static str,
        claimed: u64,
        remaining: usize,
    },
    #[error("{what} has the negative length {length}")]
    NegativeLength { what: &'static str, length: i64 },
    #[error("string field {0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    #[error("unsigned varint longer than 5 bytes or above 2^32")]
    InvalidVarint,
    #[error("structs nested deeper than {0} levels")]
    DepthExceeded(usize),
    #[error("api key {api_key} does not support version {version}")]
    UnsupportedVersion { api_key: i16, version: i16 },
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("field {0} is null but not nullable in this version")]
    NullNotAllowed(&'static str),
    #[error("tagged field {tag} declares {declared} bytes but its value used {used}")]
    TaggedFieldSize {
        tag: u32,
        declared: usize,
        used: usize,
    },
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("field {0} is None but not nullable in this version")]
    NullNotAllowed(&'static str),
    #[error("{what} is {len} long, more than its length prefix can hold")]
    TooLong { what: &'static str, len: usize },
}

/// Encodes a value for one version of its message.
pub trait Encode {
    fn encode(&self, enc: &mut Encoder, version: i16) -> Result<(), EncodeError>;
    /// The exact number of bytes `encode` produces, file regions included.
    fn encoded_len(&self, version: i16) -> Result<usize, EncodeError>;
}

/// Decodes a value for one version of its message.
pub trait Decode: Sized {
    fn decode(dec: &mut Decoder, version: i16) -> Result<Self, DecodeError>;
}

/// An array of small integers (replica lists, ISRs, partition indexes):
/// the first four elements live inline, so decoding the usual handful costs
/// no heap allocation (in a Metadata response, two per partition were most
/// of the decode time). It derefs to a slice; build one with `collect`,
/// `from_slice` or `Vec::into`.
pub type InlineVec<T> = smallvec::SmallVec<[T; 4]>;

/// `Decode` for a generated nested struct through its `decode_into`: a
/// default value, then its fields decoded into it (one line per struct in
/// the generated code instead of the same impl written out each time).
macro_rules! decode_via_into {
    ($name:ident) => {
        impl $crate::codec::Decode for $name {
            #[inline]
            fn decode(
                dec: &mut $crate::codec::Decoder,
                version: i16,
            ) -> Result<Self, $crate::codec::DecodeError> {
                let mut value = Self::default();
                value.decode_into(dec, version)?;
                Ok(value)
            }
        }
    };
}
pub(crate) use decode_via_into;

/// Reads values from one frame. Byte and record fields come out as slices of
/// the frame (`Bytes::slice`), never copies.
#[derive(Debug, Clone)]
pub struct Decoder {
    buf: Bytes,
    position: usize,
    depth: usize,
    max_depth: usize,
}

impl Decoder {
    pub fn new(frame: Bytes) -> Decoder {
        Decoder::with_max_depth(frame, MAX_DEPTH_DEFAULT)
    }

    pub fn with_max_depth(frame: Bytes, max_depth: usize) -> Decoder {
        Decoder {
            buf: frame,
            position: 0,
            depth: 0,
            max_depth,
        }
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.position
    }

    /// The whole frame, and where the next read starts in it.
    pub(crate) fn frame(&self) -> &Bytes {
        &self.buf
    }

    pub(crate) fn position(&self) -> usize {
        self.position
    }

    /// Moves on to `position`, which a `Reader` over `frame()` reached.
    pub(crate) fn set_position(&mut self, position: usize) {
        debug_assert!(position <= self.buf.len());
        self.position = position;
    }

    /// The bytes not read yet, without consuming them.
    pub fn peek(&self, len: usize) -> Result<&[u8], DecodeError> {
        self.buf
            .get(self.position..self.position.saturating_add(len))
            .ok_or(DecodeError::Truncated {
                needed: len,
                remaining: self.remaining(),
            })
    }

    /// Called when a struct starts; fails past the depth limit.
    pub fn enter(&mut self) -> Result<(), DecodeError> {
        if self.depth >= self.max_depth {
            return Err(DecodeError::DepthExceeded(self.max_depth));
        }
        self.depth += 1;
        Ok(())
    }

    /// Called when a struct ends.
    pub fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Runs one of `Reader`'s primitives at this decoder's position: the
    /// wire primitives are written once, for borrowed frames, and an owned
    /// frame borrows itself for the length of one call (it all inlines).
    #[inline(always)]
    fn read<T>(&mut self, primitive: impl FnOnce(&mut Reader<'_>) -> T) -> T {
        let mut reader = Reader {
            buf: &self.buf,
            position: self.position,
        };
        let out = primitive(&mut reader);
        self.position = reader.position;
        out
    }

    #[inline(always)]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.read(|reader| reader.take())
    }

    #[inline(always)]
    fn check_length(&self, what: &'static str, claimed: usize) -> Result<(), DecodeError> {
        Reader {
            buf: &self.buf,
            position: self.position,
        }
        .check_length(what, claimed)
    }

    #[inline(always)]
    fn slice(&mut self, len: usize) -> Bytes {
        let out = self.buf.slice(self.position..self.position + len);
        self.position += len;
        out
    }

    #[inline]
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.take::<1>()?[0] != 0)
    }

    #[inline]
    pub fn i8(&mut self) -> Result<i8, DecodeError> {
        Ok(i8::from_be_bytes(self.take()?))
    }

    #[inline]
    pub fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.take()?))
    }

    #[inline]
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take()?))
    }

    #[inline]
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take()?))
    }

    #[inline]
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    #[inline]
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    #[inline]
    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_be_bytes(self.take()?))
    }

    #[inline]
    pub fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        Ok(Uuid::from_bytes(self.take()?))
    }

    /// Kafka's unsigned varint: at most 5 bytes, at most 32 bits.
    #[inline(always)]
    pub fn unsigned_varint(&mut self) -> Result<u32, DecodeError> {
        self.read(|reader| reader.unsigned_varint())
    }

    #[inline(always)]
    fn length(
        &mut self,
        what: &'static str,
        compact: bool,
        wide: bool,
    ) -> Result<Option<usize>, DecodeError> {
        self.read(|reader| reader.length(what, compact, wide))
    }

    #[inline]
    pub fn string(&mut self, compact: bool, what: &'static str) -> Result<String, DecodeError> {
        self.read(|reader| match reader.opt_str(false, compact, what)? {
            Some(text) => Ok(text.to_owned()),
            None => Err(DecodeError::NullNotAllowed(what)),
        })
    }

    /// A string whose Rust type is `Option`; null is accepted only if `nullable`.
    #[inline]
    pub fn opt_string(
        &mut self,
        nullable: bool,
        compact: bool,
        what: &'static str,
    ) -> Result<Option<String>, DecodeError> {
        self.read(|reader| Ok(reader.opt_str(nullable, compact, what)?.map(str::to_owned)))
    }

    #[inline(always)]
    fn opt_slice(
        &mut self,
        nullable: bool,
        compact: bool,
        what: &'static str,
    ) -> Result<Option<Bytes>, DecodeError> {
        match self.length(what, compact, true)? {
            Some(len) => {
                self.check_length(what, len)?;
                Ok(Some(self.slice(len)))
            }
            None if nullable => Ok(None),
            None => Err(DecodeError::NullNotAllowed(what)),
        }
    }

    #[inline]
    pub fn bytes(&mut self, compact: bool, what: &'static str) -> Result<Bytes, DecodeError> {
        self.opt_slice(false, compact, what)
            .map(Option::unwrap_or_default)
    }

    #[inline]
    pub fn opt_bytes(
        &mut self,
        nullable: bool,
        compact: bool,
        what: &'static str,
    ) -> Result<Option<Bytes>, DecodeError> {
        self.opt_slice(nullable, compact, what)
    }

    /// Records stay opaque here: a slice of the frame, parsed by `rill-records`.
    #[inline]
    pub fn opt_records(
        &mut self,
        nullable: bool,
        compact: bool,
        what: &'static str,
    ) -> Result<Option<Records>, DecodeError> {
        Ok(self.opt_slice(nullable, compact, what)?.map(Records::Bytes))
    }

    /// A struct field whose Rust type is `Option`: nullable versions carry a
    /// marker byte, -1 for null.
    #[inline]
    pub fn opt_struct<T>(
        &mut self,
        nullable: bool,
        read: impl FnOnce(&mut Decoder) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if nullable && self.i8()? < 0 {
            return Ok(None);
        }
        read(self).map(Some)
    }

    #[inline(always)]
    fn array_count(
        &mut self,
        nullable: bool,
        compact: bool,
        element_len_min: usize,
        what: &'static str,
    ) -> Result<Option<usize>, DecodeError> {
        self.read(|reader| reader.array_count(nullable, compact, element_len_min, what))
    }

    #[inline]
    fn elements<T>(
        &mut self,
        count: usize,
        mut read: impl FnMut(&mut Decoder) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(read(self)?);
        }
        Ok(out)
    }

    #[inline]
    pub fn array<T>(
        &mut self,
        compact: bool,
        element_len_min: usize,
        what: &'static str,
        read: impl FnMut(&mut Decoder) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        match self.array_count(false, compact, element_len_min, what)? {
            Some(count) => self.elements(count, read),
            None => Err(DecodeError::NullNotAllowed(what)),
        }
    }

    /// An array of structs, each decoded by `read` into an element already
    /// in the array (see the generator: no element is built elsewhere and
    /// moved). `array_count` has bounded `count` by the bytes left.
    #[inline]
    pub fn array_in_place<T: Default>(
        &mut self,
        compact: bool,
        element_len_min: usize,
        what: &'static str,
        read: impl FnMut(&mut Decoder, &mut T) -> Result<(), DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        // Not nullable: a null is already an error from `array_count`.
        self.opt_array_in_place(false, compact, element_len_min, what, read)
            .map(Option::unwrap_or_default)
    }

    #[inline]
    pub fn opt_array_in_place<T: Default>(
        &mut self,
        nullable: bool,
        compact: bool,
        element_len_min: usize,
        what: &'static str,
        read: impl FnMut(&mut Decoder, &mut T) -> Result<(), DecodeError>,
    ) -> Result<Option<Vec<T>>, DecodeError> {
        match self.array_count(nullable, compact, element_len_min, what)? {
            Some(count) => self.elements_in_place(count, read).map(Some),
            None => Ok(None),
        }
    }

    #[inline]
    fn elements_in_place<T: Default>(
        &mut self,
        count: usize,
        mut read: impl FnMut(&mut Decoder, &mut T) -> Result<(), DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let mut out = Vec::with_capacity(count);
        out.resize_with(count, T::default);
        for item in &mut out {
            read(self, item)?;
        }
        Ok(out)
    }

    #[inline]
    pub fn opt_array<T>(
        &mut self,
        nullable: bool,
        compact: bool,
        element_len_min: usize,
        what: &'static str,
        read: impl FnMut(&mut Decoder) -> Result<T, DecodeError>,
    ) -> Result<Option<Vec<T>>, DecodeError> {
        match self.array_count(nullable, compact, element_len_min, what)? {
            Some(count) => self.elements(count, read).map(Some),
            None => Ok(None),
        }
    }

    /// Reads `count` fixed-size elements whose bytes `array_count` has
    /// already found in the frame, without a check per element.
    #[inline]
    fn fixed_elements<C: FromIterator<T>, T, const N: usize>(
        &mut self,
        count: usize,
        convert: impl Fn([u8; N]) -> T,
    ) -> Result<C, DecodeError> {
        let start = self.position;
        let end = start + count * N;
        let bytes = self.buf.get(start..end).ok_or(DecodeError::Truncated {
            needed: count * N,
            remaining: self.buf.len() - start,
        })?;
        let out = bytes
            .chunks_exact(N)
            .map(|chunk| {
                let mut element = [0u8; N];
                element.copy_from_slice(chunk);
                convert(element)
            })
            .collect();
        self.position = end;
        Ok(out)
    }

    /// An array of a fixed-size primitive, e.g. `fixed_array(c, "Isr", i32::from_be_bytes)`.
    #[inline]
    pub fn fixed_array<C: FromIterator<T>, T, const N: usize>(
        &mut self,
        compact: bool,
        what: &'static str,
        convert: impl Fn([u8; N]) -> T,
    ) -> Result<C, DecodeError> {
        match self.array_count(false, compact, N, what)? {
            Some(count) => self.fixed_elements(count, convert),
            None => Err(DecodeError::NullNotAllowed(what)),
        }
    }

    #[inline]
    pub fn opt_fixed_array<C: FromIterator<T>, T, const N: usize>(
        &mut self,
        nullable: bool,
        compact: bool,
        what: &'static str,
        convert: impl Fn([u8; N]) -> T,
    ) -> Result<Option<C>, DecodeError> {
        match self.array_count(nullable, compact, N, what)? {
            Some(count) => self.fixed_elements(count, convert).map(Some),
            None => Ok(None),
        }
    }

    /// Reads a tagged-field section. `known` decodes a tag it knows from a
    /// decoder bounded to that field's bytes and returns `false` for a tag it
    /// does not know; those are kept raw.
    #[inline]
    pub fn tagged_fields(
        &mut self,
        mut known: impl FnMut(u32, &mut Decoder) -> Result<bool, DecodeError>,
    ) -> Result<Vec<RawTaggedField>, DecodeError> {
        let count = self.read(|reader| reader.tag_count())?;
        let mut unknown = Vec::new();
        for _ in 0..count {
            let (tag, size) = self.read(|reader| reader.tag_header())?;
            let data = self.slice(size);
            let mut field = Decoder {
                buf: data.clone(),
                position: 0,
                depth: self.depth,
                max_depth: self.max_depth,
            };
            if known(tag, &mut field)? {
                if field.remaining() != 0 {
                    return Err(DecodeError::TaggedFieldSize {
                        tag,
                        declared: size,
                        used: size - field.remaining(),
                    });
                }
            } else {
                unknown.push(RawTaggedField { tag, data });
            }
        }
        Ok(unknown)
    }
}

/// The wire primitives over a borrowed frame. `Decoder` runs them on the
/// frame it owns; the Produce request view (`crate::produce`) walks a frame
/// with them and hands out slices of it, so every length is checked by the
/// same code either way.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) position: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.position
    }

    #[inline(always)]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let start = self.position;
        let out = self
            .buf
            .get(start..start + N)
            .and_then(|bytes| <[u8; N]>::try_from(bytes).ok())
            .ok_or(DecodeError::Truncated {
                needed: N,
                remaining: self.buf.len() - start,
            })?;
        self.position = start + N;
        Ok(out)
    }

    #[inline(always)]
    pub(crate) fn i16(&mut self) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.take()?))
    }

    #[inline(always)]
    pub(crate) fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take()?))
    }

    /// Kafka's unsigned varint: at most 5 bytes, at most 32 bits.
    #[inline(always)]
    pub(crate) fn unsigned_varint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for index in 0..5 {
            let byte = self.take::<1>()?[0];
            if index == 4 && byte > 0x0f {
                return Err(DecodeError::InvalidVarint);
            }
            value |= u32::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::InvalidVarint)
    }

    /// Checks a claimed length against the bytes left, before any allocation.
    #[inline(always)]
    fn check_length(&self, what: &'static str, claimed: usize) -> Result<(), DecodeError> {
        let remaining = self.remaining();
        if claimed > remaining {
            return Err(DecodeError::LengthExceedsRemaining {
                what,
                claimed: claimed as u64,
                remaining,
            });
        }
        Ok(())
    }

    /// Reads a length prefix; `None` is null. Compact lengths are varints
    /// holding length + 1; classic ones are `i16` or `i32` with -1 for null.
    #[inline(always)]
    fn length(
        &mut self,
        what: &'static str,
        compact: bool,
        wide: bool,
    ) -> Result<Option<usize>, DecodeError> {
        let length = if compact {
            i64::from(self.unsigned_varint()?) - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        match length {
            -1 => Ok(None),
            length if length < -1 => Err(DecodeError::NegativeLength { what, length }),
            // A u32 varint minus one, an i32 or an i16: always fits in usize.
            length => Ok(Some(length as usize)),
        }
    }

    /// Reads an array length and checks that `count` elements of at least
    /// `element_len_min` bytes each (counted as one byte when zero) fit in
    /// what remains, so neither the check nor the allocation can be fooled.
    #[inline(always)]
    pub(crate) fn array_count(
        &mut self,
        nullable: bool,
        compact: bool,
        element_len_min: usize,
        what: &'static str,
    ) -> Result<Option<usize>, DecodeError> {
        match self.length(what, compact, true)? {
            Some(count) => {
                let claimed = count.saturating_mul(element_len_min.max(1));
                if claimed > self.remaining() {
                    return Err(DecodeError::LengthExceedsRemaining {
                        what,
                        claimed: count as u64,
                        remaining: self.remaining(),
                    });
                }
                Ok(Some(count))
            }
            None if nullable => Ok(None),
            None => Err(DecodeError::NullNotAllowed(what)),
        }
    }

    #[inline(always)]
    fn bytes_body(&mut self, what: &'static str, len: usize) -> Result<&'a [u8], DecodeError> {
        self.check_length(what, len)?;
        let out = &self.buf[self.position..self.position + len];
        self.position += len;
        Ok(out)
    }

    /// A string (nullable where `nullable`), borrowed from the frame.
    #[inline]
    pub(crate) fn opt_str(
        &mut self,
        nullable: bool,
        compact: bool,
        what: &'static str,
    ) -> Result<Option<&'a str>, DecodeError> {
        match self.length(what, compact, false)? {
            Some(len) => std::str::from_utf8(self.bytes_body(what, len)?)
                .map(Some)
                .map_err(|_| DecodeError::InvalidUtf8(what)),
            None if nullable => Ok(None),
            None => Err(DecodeError::NullNotAllowed(what)),
        }
    }

    /// A bytes or records field with an `i32` or compact length, borrowed.
    #[inline]
    pub(crate) fn opt_bytes(
        &mut self,
        nullable: bool,
        compact: bool,
        what: &'static str,
    ) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.length(what, compact, true)? {
            Some(len) => self.bytes_body(what, len).map(Some),
            None if nullable => Ok(None),
            None => Err(DecodeError::NullNotAllowed(what)),
        }
    }

    /// The number of fields in a tagged-field section.
    #[inline(always)]
    fn tag_count(&mut self) -> Result<usize, DecodeError> {
        let count = self.unsigned_varint()? as usize;
        // Each tagged field takes at least two bytes: its tag and its size.
        if count.saturating_mul(2) > self.remaining() {
            return Err(DecodeError::LengthExceedsRemaining {
                what: "tagged field count",
                claimed: count as u64,
                remaining: self.remaining(),
            });
        }
        Ok(count)
    }

    /// A tagged field's tag and size, the size checked against what is left.
    #[inline(always)]
    fn tag_header(&mut self) -> Result<(u32, usize), DecodeError> {
        let tag = self.unsigned_varint()?;
        let size = self.unsigned_varint()? as usize;
        self.check_length("tagged field", size)?;
        Ok((tag, size))
    }

    /// Steps over a tagged-field section whose fields are all unknown.
    #[inline(always)]
    pub(crate) fn skip_tagged_fields(&mut self) -> Result<(), DecodeError> {
        // Nearly every section is empty: one zero byte.
        if self.buf.get(self.position) == Some(&0) {
            self.position += 1;
            return Ok(());
        }
        self.skip_tagged_fields_slow()
    }

    #[cold]
    fn skip_tagged_fields_slow(&mut self) -> Result<(), DecodeError> {
        for _ in 0..self.tag_count()? {
            let (_, size) = self.tag_header()?;
            self.position += size;
        }
        Ok(())
    }
}

/// The encoded bytes of a frame plus the file regions to splice into them.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedFrame {
    pub buf: Bytes,
    /// `(position in buf, region)`: the region's bytes go before `buf[position..]`.
    pub regions: Vec<(usize, FileRegion)>,
}

impl EncodedFrame {
    pub fn total_len(&self) -> usize {
        self.buf.len()
            + self
                .regions
                .iter()
                .map(|(_, region)| region.len as usize)
                .sum::<usize>()
    }
}

/// Writes values into one buffer; file regions are recorded, not read.
#[derive(Debug, Default)]
pub struct Encoder {
    /// A `Vec` rather than a `BytesMut`: its appends are cheaper, and it
    /// becomes `Bytes` without a copy.
    buf: Vec<u8>,
    regions: Vec<(usize, FileRegion)>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    pub fn with_capacity(capacity: usize) -> Encoder {
        Encoder {
            buf: Vec::with_capacity(capacity),
            regions: Vec::new(),
        }
    }

    /// Bytes written to the buffer so far (file regions not counted).
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    pub fn finish(self) -> EncodedFrame {
        EncodedFrame {
            buf: Bytes::from(self.buf),
            regions: self.regions,
        }
    }

    #[inline]
    pub fn put_bool(&mut self, value: bool) {
        self.buf.put_u8(u8::from(value));
    }

    #[inline]
    pub fn put_i8(&mut self, value: i8) {
        self.buf.put_i8(value);
    }

    #[inline]
    pub fn put_i16(&mut self, value: i16) {
        self.buf.put_i16(value);
    }

    #[inline]
    pub fn put_u16(&mut self, value: u16) {
        self.buf.put_u16(value);
    }

    #[inline]
    pub fn put_i32(&mut self, value: i32) {
        self.buf.put_i32(value);
    }

    #[inline]
    pub fn put_u32(&mut self, value: u32) {
        self.buf.put_u32(value);
    }

    #[inline]
    pub fn put_i64(&mut self, value: i64) {
        self.buf.put_i64(value);
    }

    #[inline]
    pub fn put_f64(&mut self, value: f64) {
        self.buf.put_f64(value);
    }

    #[inline]
    pub fn put_uuid(&mut self, value: Uuid) {
        self.buf.put_slice(value.as_bytes());
    }

    #[inline]
    pub fn put_unsigned_varint(&mut self, mut value: u32) {
        while value >= 0x80 {
            self.buf.put_u8((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.buf.put_u8(value as u8);
    }

    #[inline]
    pub fn put_raw(&mut self, data: &[u8]) {
        self.buf.put_slice(data);
    }

    /// Writes a length prefix for `len` items or bytes, or null for `None`.
    #[inline]
    fn put_length(
        &mut self,
        what: &'static str,
        len: Option<usize>,
        compact: bool,
        wide: bool,
    ) -> Result<(), EncodeError> {
        let too_long = |len| EncodeError::TooLong { what, len };
        match (len, compact) {
            (None, true) => self.put_unsigned_varint(0),
            (None, false) if wide => self.put_i32(-1),
            (None, false) => self.put_i16(-1),
            (Some(len), true) => {
                let prefix = u32::try_from(len)
                    .ok()
                    .and_then(|len| len.checked_add(1))
                    .filter(|_| wide || len <= i16::MAX as usize)
                    .ok_or_else(|| too_long(len))?;
                self.put_unsigned_varint(prefix);
            }
            (Some(len), false) if wide => {
                self.put_i32(i32::try_from(len).map_err(|_| too_long(len))?);
            }
            (Some(len), false) => {
                self.put_i16(i16::try_from(len).map_err(|_| too_long(len))?);
            }
        }
        Ok(())
    }

    #[inline]
    pub fn put_string(&mut self, value: &str, compact: bool) -> Result<(), EncodeError> {
        self.put_length("string", Some(value.len()), compact, false)?;
        self.buf.put_slice(value.as_bytes());
        Ok(())
    }

    #[inline]
    pub fn put_opt_string(
        &mut self,
        value: Option<&str>,
        nullable: bool,
        compact: bool,
        what: &'static str,
    ) -> Result<(), EncodeError> {
        match value {
            Some(value) => self.put_string(value, compact),
            None if nullable => self.put_length(what, None, compact, false),
            None => Err(EncodeError::NullNotAllowed(what)),
        }
    }

    #[inline]
    pub fn put_bytes(&mut self, value: &[u8], compact: bool) -> Result<(), EncodeError> {
        self.put_length("bytes", Some(value.len()), compact, true)?;
        self.buf.put_slice(value);
        Ok(())
    }

    #[inline]
    pub fn put_opt_bytes(
        &mut self,
        value: Option<&Bytes>,
        nullable: bool,
        compact: bool,
        what: &'static str,
    ) -> Result<(), EncodeError> {
        match value {
            Some(value) => self.put_bytes(value, compact),
            None if nullable => self.put_length(what, None, compact, true),
            None => Err(EncodeError::NullNotAllowed(what)),
        }
    }

    /// Writes the length prefix of a records field; file regions are recorded
    /// at the current position for the sender to splice in.
    #[inline]
    pub fn put_opt_records(
        &mut self,
        value: Option<&Records>,
        nullable: bool,
        compact: bool,
        what: &'static str,
    ) -> Result<(), EncodeError> {
        match value {
            Some(Records::Bytes(bytes)) => self.put_bytes(bytes, compact),
            Some(Records::Files(regions)) => {
                self.put_length(what, Some(records_len(regions)), compact, true)?;
                for region in regions {
                    self.regions.push((self.buf.len(), region.clone()));
                }
                Ok(())
            }
            None if nullable => self.put_length(what, None, compact, true),
            None => Err(EncodeError::NullNotAllowed(what)),
        }
    }

    #[inline]
    pub fn put_opt_struct<T>(
        &mut self,
        value: Option<&T>,
        nullable: bool,
        what: &'static str,
        write: impl FnOnce(&mut Encoder, &T) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        match value {
            Some(value) => {
                if nullable {
                    self.put_i8(1);
                }
                write(self, value)
            }
            None if nullable => {
                self.put_i8(-1);
                Ok(())
            }
            None => Err(EncodeError::NullNotAllowed(what)),
        }
    }

    #[inline]
    pub fn put_array<T>(
        &mut self,
        items: &[T],
        compact: bool,
        mut write: impl FnMut(&mut Encoder, &T) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        self.put_length("array", Some(items.len()), compact, true)?;
        for item in items {
            write(self, item)?;
        }
        Ok(())
    }

    #[inline]
    pub fn put_opt_array<T>(
        &mut self,
        items: Option<&[T]>,
        nullable: bool,
        compact: bool,
        what: &'static str,
        write: impl FnMut(&mut Encoder, &T) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        match items {
            Some(items) => self.put_array(items, compact, write),
            None if nullable => self.put_length(what, None, compact, true),
            None => Err(EncodeError::NullNotAllowed(what)),
        }
    }

    /// Writes the tag and size of a tagged field whose value follows.
    #[inline]
    pub fn put_tag(&mut self, tag: u32, size: usize) -> Result<(), EncodeError> {
        let size = u32::try_from(size).map_err(|_| EncodeError::TooLong {
            what: "tagged field",
            len: size,
        })?;
        self.put_unsigned_varint(tag);
        self.put_unsigned_varint(size);
        Ok(())
    }

    /// Writes the number of tagged fields that follow.
    #[inline]
    pub fn put_tag_count(&mut self, count: usize) -> Result<(), EncodeError> {
        let count = u32::try_from(count).map_err(|_| EncodeError::TooLong {
            what: "tagged fields",
            len: count,
        })?;
        self.put_unsigned_varint(count);
        Ok(())
    }

    /// Writes a tagged-field section holding only raw fields.
    #[inline]
    pub fn put_raw_tags(&mut self, raw: &[RawTaggedField]) -> Result<(), EncodeError> {
        self.put_tag_count(raw.len())?;
        self.put_raw_tags_below(raw, &mut 0, u64::MAX)
    }

    /// Writes the raw tagged fields from `*next` on whose tag is below
    /// `limit`, keeping the whole section in ascending tag order.
    #[inline]
    pub fn put_raw_tags_below(
        &mut self,
        raw: &[RawTaggedField],
        next: &mut usize,
        limit: u64,
    ) -> Result<(), EncodeError> {
        while let Some(field) = raw.get(*next) {
            if u64::from(field.tag) >= limit {
                break;
            }
            self.put_tag(field.tag, field.data.len())?;
            self.buf.put_slice(&field.data);
            *next += 1;
        }
        Ok(())
    }
}

#[inline]
fn records_len(regions: &[crate::records::FileRegion]) -> usize {
    regions.iter().map(|region| region.len as usize).sum()
}

/// Bytes taken by an unsigned varint.
#[inline]
pub fn unsigned_varint_len(value: u32) -> usize {
    match value {
        0..0x80 => 1,
        0x80..0x4000 => 2,
        0x4000..0x20_0000 => 3,
        0x20_0000..0x1000_0000 => 4,
        _ => 5,
    }
}

/// Bytes taken by a length prefix (compact ones hold length + 1).
#[inline]
pub fn length_prefix_len(len: Option<usize>, compact: bool, wide: bool) -> usize {
    match (compact, wide) {
        (true, _) => {
            let prefix = len.map_or(0, |len| len.saturating_add(1));
            unsigned_varint_len(u32::try_from(prefix).unwrap_or(u32::MAX))
        }
        (false, true) => 4,
        (false, false) => 2,
    }
}

#[inline]
pub fn string_len(value: &str, compact: bool) -> usize {
    length_prefix_len(Some(value.len()), compact, false) + value.len()
}

#[inline]
pub fn opt_string_len(value: Option<&str>, compact: bool) -> usize {
    match value {
        Some(value) => string_len(value, compact),
        None => length_prefix_len(None, compact, false),
    }
}

#[inline]
pub fn bytes_len(value: &[u8], compact: bool) -> usize {
    length_prefix_len(Some(value.len()), compact, true) + value.len()
}

#[inline]
pub fn opt_bytes_len(value: Option<&Bytes>, compact: bool) -> usize {
    match value {
        Some(value) => bytes_len(value, compact),
        None => length_prefix_len(None, compact, true),
    }
}

#[inline]
pub fn opt_records_len(value: Option<&Records>, compact: bool) -> usize {
    match value {
        Some(Records::Bytes(bytes)) => bytes_len(bytes, compact),
        Some(Records::Files(regions)) => {
            let len = records_len(regions);
            length_prefix_len(Some(len), compact, true) + len
        }
        None => length_prefix_len(None, compact, true),
    }
}

#[inline]
pub fn opt_struct_len<T>(
    value: Option<&T>,
    nullable: bool,
    len: impl FnOnce(&T) -> Result<usize, EncodeError>,
) -> Result<usize, EncodeError> {
    let marker = usize::from(nullable);
    match value {
        Some(value) => Ok(marker + len(value)?),
        None => Ok(marker),
    }
}

#[inline]
pub fn array_len<T>(
    items: &[T],
    compact: bool,
    mut len: impl FnMut(&T) -> Result<usize, EncodeError>,
) -> Result<usize, EncodeError> {
    let mut total = length_prefix_len(Some(items.len()), compact, true);
    for item in items {
        total += len(item)?;
    }
    Ok(total)
}

#[inline]
pub fn opt_array_len<T>(
    items: Option<&[T]>,
    compact: bool,
    len: impl FnMut(&T) -> Result<usize, EncodeError>,
) -> Result<usize, EncodeError> {
    match items {
        Some(items) => array_len(items, compact, len),
        None => Ok(length_prefix_len(None, compact, true)),
    }
}

/// Bytes taken by one tagged field with a value of `size` bytes.
#[inline]
pub fn tag_len(tag: u32, size: usize) -> usize {
    unsigned_varint_len(tag) + unsigned_varint_len(u32::try_from(size).unwrap_or(u32::MAX)) + size
}

/// Bytes taken by the count of a tagged-field section.
#[inline]
pub fn tag_count_len(count: usize) -> usize {
    unsigned_varint_len(u32::try_from(count).unwrap_or(u32::MAX))
}

/// Bytes taken by a tagged-field section holding only raw fields.
#[inline]
pub fn raw_tags_section_len(raw: &[RawTaggedField]) -> usize {
    tag_count_len(raw.len()) + raw_tags_len(raw)
}

/// Bytes taken by raw tagged fields.
#[inline]
pub fn raw_tags_len(raw: &[RawTaggedField]) -> usize {
    raw.iter()
        .map(|field| tag_len(field.tag, field.data.len()))
        .sum()
}
