//! The slot table. Slot `i` is one interposed function: a trampoline, the real function it
//! forwards to (`cf_real[i]` in slots.s) and metadata. Slots `0..EXPORT_COUNT` are the exported
//! functions of hooks.list, resolved lazily on their first call; the rest is a pool handed out
//! by cuGetProcAddress and dlsym, each bound for good to one real pointer.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use hook_list::FunctionId;

use crate::generated::{EXPORTS, EXPORT_COUNT, POOL_SIZE, SLOT_BYTES};
use crate::{resolve, Api};

/// Every slot: the exports, then the pool.
pub const TOTAL: usize = EXPORT_COUNT + POOL_SIZE;
const NAME_MAX: usize = 64;

unsafe extern "C" {
    /// Real-function pointers, one per slot (slots.s).
    static cf_real: [AtomicUsize; TOTAL];
    /// The first pool trampoline (slots.s); the others follow, one every SLOT_BYTES.
    static cf_pool_base: u8;
}

fn real_cell(slot: usize) -> &'static AtomicUsize {
    // SAFETY: cf_real has TOTAL aligned words in .data; callers pass slot < TOTAL.
    unsafe { &cf_real[slot] }
}

/// What the slow path needs to know about a slot.
pub struct Meta {
    pub name: &'static str,
    pub api: Api,
    pub flags: hook_list::flags::Flags,
    /// The hooks.list function it is (None: a driver or NVML entry point the list does not name).
    pub function: Option<FunctionId>,
}

struct PoolSlot {
    ready: AtomicBool,
    data: UnsafeCell<PoolData>,
}

struct PoolData {
    name: [u8; NAME_MAX],
    len: usize,
    api: Api,
    flags: hook_list::flags::Flags,
    function: Option<FunctionId>,
    version: i32,
    cu_flags: u64,
}

// SAFETY: `data` is written once by the thread that claimed the slot, before `ready` is set with
// Release; it is read only after observing `ready` with Acquire.
unsafe impl Sync for PoolSlot {}

static POOL: [PoolSlot; POOL_SIZE] = [const {
    PoolSlot {
        ready: AtomicBool::new(false),
        data: UnsafeCell::new(PoolData {
            name: [0; NAME_MAX],
            len: 0,
            // All zero, so the 4096 slots cost no file space and no page until used (.bss).
            api: Api::Runtime,
            flags: 0,
            function: None,
            version: 0,
            cu_flags: 0,
        }),
    }
}; POOL_SIZE];
static NEXT: AtomicUsize = AtomicUsize::new(0);
static RESOLVED: [AtomicBool; EXPORT_COUNT] = [const { AtomicBool::new(false) }; EXPORT_COUNT];
/// Per slot: the on-period in which its fault was last logged.
static LOGGED: [AtomicU32; TOTAL] = [const { AtomicU32::new(0) }; TOTAL];
static POOL_FULL_WARNED: AtomicBool = AtomicBool::new(false);

fn pool_data(p: usize) -> Option<&'static PoolData> {
    let s = &POOL[p];
    // SAFETY: see the Sync impl.
    s.ready.load(Ordering::Acquire).then(|| unsafe { &*s.data.get() })
}

pub fn meta(slot: usize) -> Option<Meta> {
    if slot < EXPORT_COUNT {
        let h = &EXPORTS[slot];
        return Some(Meta { name: h.name(), api: h.api, flags: h.flags, function: Some(h.function) });
    }
    let d = pool_data(slot.checked_sub(EXPORT_COUNT).filter(|&p| p < POOL_SIZE)?)?;
    Some(Meta {
        name: core::str::from_utf8(&d.name[..d.len]).unwrap_or("?"),
        api: d.api,
        flags: d.flags,
        function: d.function,
    })
}

/// Makes sure `cf_real[slot]` holds the real function; false if it cannot be found.
pub fn ensure_real(slot: usize) -> bool {
    if slot >= EXPORT_COUNT {
        return true; // pool slots are bound before they are handed out
    }
    if RESOLVED[slot].load(Ordering::Acquire) {
        return true;
    }
    let h = &EXPORTS[slot];
    let p = resolve::find(h.api, h.cname());
    if p == 0 {
        return false;
    }
    real_cell(slot).store(p, Ordering::Release);
    RESOLVED[slot].store(true, Ordering::Release);
    true
}

/// The real function of a slot (0 while an exported slot is unresolved).
pub fn real(slot: usize) -> usize {
    if slot < TOTAL {
        real_cell(slot).load(Ordering::Acquire)
    } else {
        0
    }
}

/// True the first time a slot faults in on-period `period`.
pub fn first_fault_in(slot: usize, period: u32) -> bool {
    slot < TOTAL && LOGGED[slot].swap(period, Ordering::AcqRel) != period
}

/// A trampoline bound to `real` for (name, version, flags): an existing one if this exact
/// binding was handed out before, else a new pool slot. When the pool is exhausted the real
/// pointer itself is returned (that function then cannot fault), with one warning.
pub fn wrap(api: Api, name: &[u8], version: i32, cu_flags: u64, real: usize, function: Option<FunctionId>) -> usize {
    let flags = function.map_or(0, |id| hook_list::FUNCTIONS[usize::from(id)].flags);
    let stored = name.len().min(NAME_MAX);
    let claimed = NEXT.load(Ordering::Acquire).min(POOL_SIZE);
    for p in 0..claimed {
        if let Some(d) = pool_data(p) {
            if real_cell(EXPORT_COUNT + p).load(Ordering::Relaxed) == real
                && d.version == version
                && d.cu_flags == cu_flags
                && d.name[..d.len] == name[..stored]
            {
                return pool_entry(p);
            }
        }
    }
    let p = NEXT.fetch_add(1, Ordering::AcqRel);
    if p >= POOL_SIZE {
        if !POOL_FULL_WARNED.swap(true, Ordering::Relaxed) {
            say!("all {} trampolines in use; further CUDA entry points are not faulted", POOL_SIZE);
        }
        return real;
    }
    let s = &POOL[p];
    // SAFETY: slot p was claimed by the fetch_add above and is not yet published.
    unsafe {
        let d = &mut *s.data.get();
        d.name[..stored].copy_from_slice(&name[..stored]);
        d.len = stored;
        d.api = api;
        d.flags = flags;
        d.function = function;
        d.version = version;
        d.cu_flags = cu_flags;
    }
    real_cell(EXPORT_COUNT + p).store(real, Ordering::Release);
    s.ready.store(true, Ordering::Release);
    pool_entry(p)
}

fn pool_entry(p: usize) -> usize {
    // Only the address of the symbol is taken; p < POOL_SIZE trampolines follow it.
    core::ptr::addr_of!(cf_pool_base) as usize + p * SLOT_BYTES
}
