//! A server's open connections, for `connections()`, broadcasts and termination.

use crate::connection::WebSocketConnection;

/// Where `ws` lives: its loop and its key there.
fn place(ws: &WebSocketConnection) -> Option<(usize, usize)> {
    let key = ws.inner.conn.shared().loop_key()?;
    Some((ws.inner.loop_index as usize, key))
}

/// The connections a server has opened and not yet ended, in slots indexed by their
/// loop and their key in it: 8 bytes per slot, up to the most connections a loop has
/// held at once (a map by id took about 34 per connection with its nodes), and no
/// search to insert or remove one. Slots are reused: a loop gives an ended connection's
/// key to a later one only after the ended one's `on_terminate` (which removes it) has
/// returned (`ConnShared::loop_key`).
#[derive(Default)]
pub(crate) struct ConnectionTable {
    loops: Vec<Vec<Option<WebSocketConnection>>>,
    len: usize,
}

impl ConnectionTable {
    /// `ws`'s slot, made if need be.
    fn slot(&mut self, ws: &WebSocketConnection) -> Option<&mut Option<WebSocketConnection>> {
        let (loop_index, key) = place(ws)?;
        if self.loops.len() <= loop_index {
            self.loops.resize_with(loop_index + 1, Vec::new);
        }
        let slots = &mut self.loops[loop_index];
        if slots.len() <= key {
            slots.resize_with(key + 1, || None);
        }
        Some(&mut slots[key])
    }

    /// Adds an opened connection (replacing one left in its slot, which cannot happen
    /// while every ended connection is removed first).
    pub(crate) fn insert(&mut self, ws: WebSocketConnection) {
        let Some(slot) = self.slot(&ws) else {
            return;
        };
        if slot.replace(ws).is_none() {
            self.len += 1;
        }
    }

    /// Removes `ws`, if it is in the table.
    pub(crate) fn remove(&mut self, ws: &WebSocketConnection) {
        let Some((loop_index, key)) = place(ws) else {
            return;
        };
        let Some(slot) = self.loops.get_mut(loop_index).and_then(|s| s.get_mut(key)) else {
            return;
        };
        if slot.as_ref().is_some_and(|held| held.id() == ws.id()) {
            *slot = None;
            self.len -= 1;
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every connection in the table, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &WebSocketConnection> {
        self.loops.iter().flatten().flatten()
    }
}
