//! Revocation and the float (PROTOCOLS.md, invariant 5).
//!
//! - **Blocks.** Staff block a card (lost, stolen, its key known to be extracted) or a card
//!   maker (every card it vouched for), once and for good (`POST /center/v1/blocks`). Block
//!   n makes version n of the issuer's signed block list, whose entries are the newest
//!   [`BLOCK_LIST_MAX`] blocks: all the room a card keeps. The center itself refuses every
//!   block, however old. Any version is re-signed from the rows (ECDSA per RFC 6979 is
//!   deterministic), so a load's retry gets the very list its authorisation covers.
//! - **The float**, per asset, is kept by the schema's triggers; an unload that would make
//!   it negative is refused by the code (`units`), which records an alarm here: one row per
//!   (card, counter), at most [`MAX_ALARMS_PER_CARD`] per card, so that neither a retry nor
//!   a card that signs receipts for every counter can fill the disk.

use std::sync::Mutex;

use apdu_spec::blocklist::{BlockEntry, BlockList, MAX_ENTRIES as BLOCK_LIST_MAX};
use apdu_spec::units::{UnitMessage, UnitValue};
use valuecard_protocol::ErrorCode;
use valuecard_protocol::api::{AssetFloat, BlockAnswer, BlockRequest, FloatAlarm, FloatReport};

use super::{Center, today};
use crate::db::{Tx, Value};
use crate::error::{ApiError, ApiResult, invalid};

/// The longest reason staff may give for a block, in characters.
pub const MAX_REASON_LEN: usize = 200;
/// The most float alarms kept per card: enough to see a card that keeps trying, bounded so
/// that a card signing receipts for every counter cannot fill the disk.
pub const MAX_ALARMS_PER_CARD: usize = 16;

/// The last block list signed.
#[derive(Default)]
pub(super) struct ListCache(Mutex<Option<BlockList>>);

/// Called with each new block list, after its block is committed.
pub(super) type Listener = Box<dyn Fn(&BlockList) + Send + Sync>;

fn kind_name(entry: &BlockEntry) -> (&'static str, [u8; 32]) {
    match entry {
        BlockEntry::Card(id) => ("card", *id),
        BlockEntry::Maker(id) => ("maker", *id),
    }
}

/// CardBlocked if the card `card_id` or its maker `maker` is blocked.
pub(super) fn refuse_blocked(
    tx: &mut dyn Tx,
    card_id: &[u8; 32],
    maker: &[u8; 32],
) -> ApiResult<()> {
    let row = tx.query_opt(
        "SELECT kind FROM blocks WHERE (kind = 'card' AND id = ?1) OR (kind = 'maker' AND id = ?2)
         ORDER BY kind",
        &[card_id.into(), maker.into()],
    )?;
    match row {
        None => Ok(()),
        Some(row) => Err(ApiError::new(
            ErrorCode::CardBlocked,
            if row.text(0)? == "card" {
                format!("card {} is blocked", hex::encode(card_id))
            } else {
                format!(
                    "card {} was made by maker {}, which is blocked",
                    hex::encode(card_id),
                    hex::encode(maker)
                )
            },
        )),
    }
}

/// The number of blocks: the current version of the list.
pub(super) fn current_version(tx: &mut dyn Tx) -> ApiResult<u32> {
    let count = tx
        .query_opt("SELECT COUNT(*) FROM blocks", &[])?
        .map(|r| r.u64(0))
        .transpose()?
        .unwrap_or(0);
    u32::try_from(count).map_err(|_| ApiError::internal("more blocks than a list version counts"))
}

impl Center {
    /// Version `version` of the signed block list: the newest blocks up to it.
    pub(super) fn block_list_at(&self, tx: &mut dyn Tx, version: u32) -> ApiResult<BlockList> {
        let mut cache = self.block_list.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = cache.as_ref().filter(|l| l.version == version) {
            return Ok(list.clone());
        }
        let rows = tx.query(
            "SELECT kind, id FROM blocks WHERE version <= ?1 ORDER BY version DESC LIMIT ?2",
            &[
                Value::Int(i64::from(version)),
                Value::Int(BLOCK_LIST_MAX as i64),
            ],
        )?;
        let mut entries = rows
            .iter()
            .map(|r| {
                let id = r.array(1)?;
                match r.text(0)?.as_str() {
                    "card" => Ok(BlockEntry::Card(id)),
                    "maker" => Ok(BlockEntry::Maker(id)),
                    other => Err(ApiError::internal(format!("a block of kind {other:?}"))),
                }
            })
            .collect::<ApiResult<Vec<_>>>()?;
        entries.reverse();
        let list = BlockList::sign(&self.issuer, version, &entries);
        *cache = Some(list.clone());
        Ok(list)
    }

    /// Hands every new block list to `listener` once its block is committed (`all` mode
    /// gives it to the arbiter of the same process, which otherwise learns it from `POST
    /// /arbiter/v1/block-list`). Set once; a second listener is ignored.
    pub fn forward_blocks_to(&self, listener: impl Fn(&BlockList) + Send + Sync + 'static) {
        let _ = self.block_listener.set(Box::new(listener));
    }

    /// The current block list, signed (`GET /center/v1/block-list`; anyone may read it).
    pub fn block_list(&self) -> ApiResult<BlockList> {
        self.db.transaction(|tx| {
            let version = current_version(tx)?;
            self.block_list_at(tx, version)
        })
    }

    /// Version `version` of the signed block list, as it was signed then; a version newer
    /// than the current one is refused.
    pub fn block_list_version(&self, version: u32) -> ApiResult<BlockList> {
        self.db.transaction(|tx| {
            let current = current_version(tx)?;
            if version > current {
                return Err(invalid(format!(
                    "version: the block list is at version {current}, not {version}"
                )));
            }
            self.block_list_at(tx, version)
        })
    }

    /// Blocks a card or a card maker (admin), for good. The same entry again changes
    /// nothing (`replayed`, with the current list).
    pub fn block(&self, admin: Option<&str>, req: &BlockRequest) -> ApiResult<BlockAnswer> {
        self.check_admin(admin)?;
        let reason = req.reason.trim();
        let chars = reason.chars().count();
        if !(1..=MAX_REASON_LEN).contains(&chars) || reason.chars().any(char::is_control) {
            return Err(invalid(format!(
                "reason: 1 to {MAX_REASON_LEN} characters on one line, for the staff's records"
            )));
        }
        let (kind, id) = kind_name(&req.entry);
        let day = today(self.clock.now());
        let answer = self.db.transaction(|tx| -> ApiResult<BlockAnswer> {
            let version = current_version(tx)?;
            let exists = tx.query_opt(
                "SELECT 1 FROM blocks WHERE kind = ?1 AND id = ?2",
                &[kind.into(), id.into()],
            )?;
            if exists.is_some() {
                return Ok(BlockAnswer {
                    entry: req.entry,
                    block_list: self.block_list_at(tx, version)?,
                    replayed: true,
                });
            }
            let version = version
                .checked_add(1)
                .ok_or_else(|| invalid("the block list is at its last version"))?;
            tx.execute(
                "INSERT INTO blocks (version, kind, id, reason, day) VALUES (?1, ?2, ?3, ?4, ?5)",
                &[
                    Value::Int(i64::from(version)),
                    kind.into(),
                    id.into(),
                    reason.into(),
                    Value::uint(day)?,
                ],
            )?;
            tracing::info!(kind, version, "blocked");
            Ok(BlockAnswer {
                entry: req.entry,
                block_list: self.block_list_at(tx, version)?,
                replayed: false,
            })
        });
        // The list of a block that did not commit was cached above: a later block would
        // take its version number, and must not be served this list.
        let answer = answer.inspect_err(|_| {
            *self.block_list.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
        })?;
        if let Some(listener) = self.block_listener.get() {
            listener(&answer.block_list);
        }
        Ok(answer)
    }

    /// The float per asset and the alarms (admin).
    pub fn float(&self, admin: Option<&str>) -> ApiResult<FloatReport> {
        self.check_admin(admin)?;
        self.db.transaction(|tx| {
            let floats = tx
                .query("SELECT asset, amount FROM floats ORDER BY asset", &[])?
                .iter()
                .map(|r| {
                    Ok(AssetFloat {
                        asset: r.text(0)?,
                        amount: r.u64(1)?,
                    })
                })
                .collect::<ApiResult<Vec<_>>>()?;
            let alarms = tx
                .query(
                    "SELECT day, card_id, counter, asset, receipt, float FROM float_alarms
                     ORDER BY day, card_id, counter",
                    &[],
                )?
                .iter()
                .map(|r| {
                    let amount = match UnitMessage::decode_unload(&r.blob(4)?) {
                        Ok(UnitMessage {
                            value: UnitValue::Asset { amount, .. },
                            ..
                        }) => amount,
                        _ => {
                            return Err(ApiError::internal(
                                "a stored alarm's receipt does not parse",
                            ));
                        }
                    };
                    Ok(FloatAlarm {
                        day: r.u64(0)?,
                        card_id: r.array(1)?,
                        counter: u32::try_from(r.u64(2)?)
                            .map_err(|_| ApiError::internal("a stored counter is out of range"))?,
                        asset: r.text(3)?,
                        amount,
                        float: r.u64(5)?,
                    })
                })
                .collect::<ApiResult<Vec<_>>>()?;
            Ok(FloatReport { floats, alarms })
        })
    }

    /// Records that the card's unload `receipt` was refused because the float of `asset`
    /// was only `float`. Its own transaction, after the refused one: at most one row per
    /// (card, counter) and [`MAX_ALARMS_PER_CARD`] per card. The log line names no card
    /// (the center's logs keep times to the second): the float route does.
    pub(super) fn raise_float_alarm(
        &self,
        message: &UnitMessage,
        receipt: &[u8],
        signature: &[u8; 64],
        asset: &str,
        amount: u64,
        float: i64,
    ) {
        let day = today(self.clock.now());
        let recorded = self.db.transaction(|tx| -> ApiResult<bool> {
            let key = [
                message.card_id.into(),
                Value::Int(i64::from(message.counter)),
            ];
            if tx
                .query_opt(
                    "SELECT 1 FROM float_alarms WHERE card_id = ?1 AND counter = ?2",
                    &key,
                )?
                .is_some()
            {
                return Ok(false);
            }
            let count = tx
                .query_opt(
                    "SELECT COUNT(*) FROM float_alarms WHERE card_id = ?1",
                    &[message.card_id.into()],
                )?
                .map(|r| r.u64(0))
                .transpose()?
                .unwrap_or(0);
            if count >= MAX_ALARMS_PER_CARD as u64 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO float_alarms (card_id, counter, asset, receipt, signature, float, day)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &[
                    message.card_id.into(),
                    Value::Int(i64::from(message.counter)),
                    asset.into(),
                    receipt.into(),
                    signature.into(),
                    Value::Int(float),
                    Value::uint(day)?,
                ],
            )?;
            Ok(true)
        });
        match recorded {
            Ok(true) => tracing::error!(
                %asset, amount, float,
                "float alarm: an unload would have given back more than cards hold; refused (GET /center/v1/float shows it): some card key is out of its chip"
            ),
            Ok(false) => tracing::warn!(
                %asset, amount, float,
                "float alarm again: an unload past the float was refused (recorded before)"
            ),
            Err(e) => {
                tracing::error!(%asset, amount, float, error = %e, "float alarm not recorded")
            }
        }
    }
}
