//! The decompressors of the compressions narinfo files name.

use std::io::{self, BufReader, Read};

use nix_narinfo::Compression;

use super::NarError;

/// Most memory one xz decoder may take. `xz -9` needs 65 MiB; a hostile
/// stream asking for more is refused instead of exhausting memory.
const XZ_MEMORY_LIMIT: u64 = 96 * 1024 * 1024;

/// Wraps a compressed download in the decompressor `compression` names.
pub fn decompress<'r>(
    compression: &Compression,
    reader: impl Read + Send + 'r,
) -> Result<Box<dyn Read + Send + 'r>, NarError> {
    // Decoders pull big chunks from the network or file.
    let buffered = BufReader::with_capacity(128 * 1024, reader);
    Ok(match compression {
        Compression::None => Box::new(buffered),
        Compression::Xz => {
            // xz's own CRC64 would check again what NarHash checks anyway,
            // at a few percent of the decoding time.
            let stream = liblzma::stream::Stream::new_stream_decoder(
                XZ_MEMORY_LIMIT,
                liblzma::stream::CONCATENATED | liblzma::stream::IGNORE_CHECK,
            )
            .map_err(io::Error::from)?;
            Box::new(liblzma::bufread::XzDecoder::new_stream(buffered, stream))
        }
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)),
        other => return Err(NarError::UnsupportedCompression(other.to_string())),
    })
}
