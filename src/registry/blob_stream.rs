//! Blob files as streams of chunks, so uploads never hold a whole blob in
//! memory.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use oci_client::errors::OciDistributionError;
use tokio::io::AsyncReadExt;

/// The file at `path` as a stream of `chunk`-byte pieces (the last may be
/// shorter).
pub(crate) async fn file_chunks(
    path: &Path,
    chunk: usize,
) -> std::io::Result<impl Stream<Item = Result<Bytes, OciDistributionError>> + Send + 'static> {
    let file = tokio::fs::File::open(path).await?;
    Ok(futures_util::stream::try_unfold(
        file,
        move |mut file| async move {
            let mut buffer = BytesMut::with_capacity(chunk);
            while buffer.len() < chunk {
                if file.read_buf(&mut buffer).await? == 0 {
                    break;
                }
            }
            if buffer.is_empty() {
                Ok(None)
            } else {
                Ok(Some((buffer.freeze(), file)))
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;

    use super::*;

    #[test]
    fn chunks_cover_the_file_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let chunks: Vec<Bytes> = runtime.block_on(async {
            file_chunks(&path, 4096)
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap()
        });
        let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [4096, 4096, 1808]);
        assert_eq!(chunks.concat(), data);
    }
}
