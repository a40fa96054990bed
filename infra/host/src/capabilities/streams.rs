//! Bridges between component `stream<u8>` ends and tokio channels, so the
//! backends work on plain `Bytes` chunks off the wasm store's thread.

use bytes::Bytes;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;
use wasmtime::StoreContextMut;
use wasmtime::component::{Destination, Source, StreamConsumer, StreamProducer, StreamResult};

use super::blobs::CHUNK;

/// Takes bytes a component writes and forwards them to a channel. Capacity
/// is reserved before bytes are taken, so a slow disk slows the writer.
pub struct ChannelConsumer {
    tx: PollSender<Bytes>,
}

impl ChannelConsumer {
    pub fn new(tx: mpsc::Sender<Bytes>) -> Self {
        ChannelConsumer {
            tx: PollSender::new(tx),
        }
    }
}

impl<D> StreamConsumer<D> for ChannelConsumer {
    type Item = u8;

    fn poll_consume(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        store: StoreContextMut<D>,
        src: Source<Self::Item>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        match self.tx.poll_reserve(cx) {
            Poll::Ready(Ok(())) => {
                let mut src = src.as_direct(store);
                let buf = src.remaining();
                let n = buf.len().min(CHUNK);
                if n == 0 {
                    return Poll::Ready(Ok(StreamResult::Completed));
                }
                let bytes = Bytes::copy_from_slice(&buf[..n]);
                src.mark_read(n);
                match self.tx.send_item(bytes) {
                    Ok(()) => Poll::Ready(Ok(StreamResult::Completed)),
                    Err(_) => Poll::Ready(Ok(StreamResult::Dropped)),
                }
            }
            // The backend stopped reading (error or limit): refuse more bytes.
            Poll::Ready(Err(_)) => Poll::Ready(Ok(StreamResult::Dropped)),
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Produces a component stream from chunks a backend reads.
pub struct ChannelProducer {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
}

impl ChannelProducer {
    pub fn new(rx: mpsc::Receiver<std::io::Result<Bytes>>) -> Self {
        ChannelProducer { rx }
    }
}

impl<D> StreamProducer<D> for ChannelProducer {
    type Item = u8;
    type Buffer = Bytes;

    fn poll_produce<'a>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        _store: StoreContextMut<'a, D>,
        mut dst: Destination<'a, Self::Item, Self::Buffer>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                dst.set_buffer(bytes);
                Poll::Ready(Ok(StreamResult::Completed))
            }
            Poll::Ready(Some(Err(e))) => {
                tracing::error!(error = %e, "blob read failed mid-stream");
                Poll::Ready(Ok(StreamResult::Dropped))
            }
            Poll::Ready(None) => Poll::Ready(Ok(StreamResult::Dropped)),
            Poll::Pending if finish => Poll::Ready(Ok(StreamResult::Cancelled)),
            Poll::Pending => Poll::Pending,
        }
    }
}
