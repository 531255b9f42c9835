//! Stream source messages as channel items: raw bytes with their position,
//! decoded later by the processor (a bad payload is counted, not raised).

use pyo3::prelude::*;
use pyo3::types::PyList;

use headrace_core::channel::Item;
use headrace_core::event::{Input, SourcePosition};

use super::{Engine, Value};

impl Engine {
    /// A stream message at `position` (its own offset); the processor records
    /// the next offset to read once it is taken in.
    pub(super) fn source_item(&self, acc: usize, data: Vec<u8>, position: SourcePosition) -> Item<Value> {
        let next = SourcePosition { offset: position.offset + 1, ..position };
        Item::SourceEvent { acc, input: Input::Bytes { data, codec: self.codecs[acc] }, position: Box::new(next) }
    }

    /// The items for confluent-kafka-like `messages` (objects with `value()`,
    /// `topic()`, `partition()`, `offset()` and `error()`), and the messages
    /// whose `error()` is set, which are not pushed but handed back.
    pub(super) fn message_items<'py>(
        &self,
        py: Python<'py>,
        acc: usize,
        messages: &Bound<'py, PyAny>,
    ) -> PyResult<(Vec<Item<Value>>, Bound<'py, PyList>)> {
        let failed = PyList::empty(py);
        let mut items = Vec::new();
        for m in messages.try_iter()? {
            let m = m?;
            if !m.call_method0(pyo3::intern!(py, "error"))?.is_none() {
                failed.append(m)?;
                continue;
            }
            let value = m.call_method0(pyo3::intern!(py, "value"))?;
            let data = if value.is_none() { Vec::new() } else { value.extract::<Vec<u8>>()? };
            let position = SourcePosition {
                topic: m.call_method0(pyo3::intern!(py, "topic"))?.extract()?,
                partition: m.call_method0(pyo3::intern!(py, "partition"))?.extract()?,
                offset: m.call_method0(pyo3::intern!(py, "offset"))?.extract()?,
            };
            items.push(self.source_item(acc, data, position));
        }
        Ok((items, failed))
    }

    /// Stream positions restored from the checkpoint, as
    /// `(accumulator, topic, partition, next offset)` rows.
    pub(super) fn restored_rows(&self) -> Vec<(String, String, i32, i64)> {
        let row = |(a, p): &(usize, SourcePosition)| (self.acc_names[*a].clone(), p.topic.clone(), p.partition, p.offset);
        self.restored_positions.iter().map(row).collect()
    }
}
