//! Which device a call acts on, for `CUDA_FAULT_DEVICES`. Asked only while faults are on with a
//! device list. Functions with a device argument (`dev=N` in hooks.list) name it; other runtime
//! calls act on the thread's current device (`cudaGetDevice`), other driver calls on the current
//! context's device (`cuCtxGetDevice`), NVML calls on their handle's index. The shim asks the real
//! library itself, with a per-thread guard so that calls the library makes meanwhile pass through.
//! A call that cannot be attributed (cuInit, device counts, no current context) is not faulted.

use core::cell::Cell;
use core::ffi::{c_char, c_void, CStr};
use core::sync::atomic::{AtomicUsize, Ordering};

use hook_list::flags;
use toggle_grammar::Devices;

use crate::arch::{self, Regs};
use crate::slots::Meta;
use crate::{resolve, Api};

/// A device UUID's 16 bytes, as `cuDeviceGetUuid` returns them.
type Uuid = [u8; 16];

fn parse_uuid(text: &[u8]) -> Option<Uuid> {
    toggle_grammar::Uuid::parse(text).map(|u| u.bytes)
}

thread_local! {
    /// Set while the shim itself calls into CUDA to find a device.
    static ASKING: Cell<bool> = const { Cell::new(false) };
}

/// True while this thread is inside the shim's own device query.
pub fn asking() -> bool {
    ASKING.with(Cell::get)
}

struct Asking;
impl Asking {
    fn enter() -> Asking {
        ASKING.with(|a| a.set(true));
        Asking
    }
}
impl Drop for Asking {
    fn drop(&mut self) {
        ASKING.with(|a| a.set(false));
    }
}

/// A real function looked up once.
struct Real {
    api: Api,
    name: &'static CStr,
    addr: AtomicUsize,
}

impl Real {
    const fn new(api: Api, name: &'static CStr) -> Real {
        Real { api, name, addr: AtomicUsize::new(0) }
    }

    fn get(&self) -> Option<usize> {
        let mut p = self.addr.load(Ordering::Acquire);
        if p == 0 {
            p = resolve::find(self.api, self.name);
            self.addr.store(p, Ordering::Release);
        }
        (p != 0).then_some(p)
    }
}

static CUDA_GET_DEVICE: Real = Real::new(Api::Runtime, c"cudaGetDevice");
static CU_CTX_GET_DEVICE: Real = Real::new(Api::Driver, c"cuCtxGetDevice");
static CU_DEVICE_GET_UUID: Real = Real::new(Api::Driver, c"cuDeviceGetUuid");
static NVML_GET_INDEX: Real = Real::new(Api::Nvml, c"nvmlDeviceGetIndex");
static NVML_BY_INDEX: Real = Real::new(Api::Nvml, c"nvmlDeviceGetHandleByIndex_v2");
static NVML_GET_UUID: Real = Real::new(Api::Nvml, c"nvmlDeviceGetUUID");
static NVML_BY_UUID: Real = Real::new(Api::Nvml, c"nvmlDeviceGetHandleByUUID");
static NVML_BY_PCI: Real = Real::new(Api::Nvml, c"nvmlDeviceGetHandleByPciBusId_v2");

type OutInt = unsafe extern "C" fn(*mut i32) -> i32;
type UuidOf = unsafe extern "C" fn(*mut Uuid, i32) -> i32;
type HandleIndex = unsafe extern "C" fn(*mut c_void, *mut u32) -> i32;
type HandleByIndex = unsafe extern "C" fn(u32, *mut *mut c_void) -> i32;
type HandleUuid = unsafe extern "C" fn(*mut c_void, *mut c_char, u32) -> i32;
type HandleByString = unsafe extern "C" fn(*const c_char, *mut *mut c_void) -> i32;

/// Calls a real `int f(int *out)`.
fn out_int(real: &Real) -> Option<i64> {
    let f = real.get()?;
    let mut v: i32 = -1;
    // SAFETY: f is the real function of this signature.
    let rc = unsafe { core::mem::transmute::<usize, OutInt>(f)(&mut v) };
    (rc == 0).then_some(i64::from(v))
}

fn cuda_uuid(ordinal: i64) -> Option<Uuid> {
    let f = CU_DEVICE_GET_UUID.get()?;
    let mut u: Uuid = [0; 16];
    // SAFETY: the real cuDeviceGetUuid(CUuuid *, CUdevice).
    let rc = unsafe { core::mem::transmute::<usize, UuidOf>(f)(&mut u, ordinal as i32) };
    (rc == 0).then_some(u)
}

fn nvml_index(handle: *mut c_void) -> Option<i64> {
    let f = NVML_GET_INDEX.get()?;
    let mut i: u32 = 0;
    // SAFETY: the real nvmlDeviceGetIndex(nvmlDevice_t, unsigned *).
    let rc = unsafe { core::mem::transmute::<usize, HandleIndex>(f)(handle, &mut i) };
    (rc == 0).then_some(i64::from(i))
}

fn nvml_uuid(ordinal: i64) -> Option<Uuid> {
    let by_index = NVML_BY_INDEX.get()?;
    let get_uuid = NVML_GET_UUID.get()?;
    let mut h: *mut c_void = core::ptr::null_mut();
    let mut buf = [0 as c_char; 96];
    // SAFETY: the real NVML functions with their signatures; buf is large enough (NVML: 96).
    unsafe {
        if core::mem::transmute::<usize, HandleByIndex>(by_index)(ordinal as u32, &mut h) != 0 {
            return None;
        }
        if core::mem::transmute::<usize, HandleUuid>(get_uuid)(h, buf.as_mut_ptr(), buf.len() as u32) != 0 {
            return None;
        }
        parse_uuid(CStr::from_ptr(buf.as_ptr()).to_bytes())
    }
}

fn nvml_handle_by(real: &Real, key: *const c_char) -> Option<*mut c_void> {
    let f = real.get()?;
    let mut h: *mut c_void = core::ptr::null_mut();
    // SAFETY: the real nvmlDeviceGetHandleBy{UUID,PciBusId_v2}(const char *, nvmlDevice_t *).
    (unsafe { core::mem::transmute::<usize, HandleByString>(f)(key, &mut h) } == 0).then_some(h)
}

/// The device (ordinal, and UUID where known) a call acts on, or None.
fn target(meta: &Meta, regs: &Regs) -> Option<(i64, Option<Uuid>)> {
    if meta.flags & flags::COUNT != 0 {
        return None; // device counts concern every device
    }
    match meta.api {
        Api::Runtime | Api::Driver => {
            let ordinal = match flags::device_arg(meta.flags) {
                Some(i) => i64::from(arch::arg(regs, i) as i32),
                None if meta.api == Api::Runtime => out_int(&CUDA_GET_DEVICE)?,
                None => out_int(&CU_CTX_GET_DEVICE)?,
            };
            Some((ordinal, None))
        }
        Api::Nvml => {
            let name = meta.name.as_bytes();
            let arg0 = arch::arg(regs, 0);
            if name.starts_with(b"nvmlDeviceGetHandleByIndex") {
                Some((arg0 as u32 as i64, None))
            } else if name.starts_with(b"nvmlDeviceGetHandleByUUID") {
                let key = arg0 as *const c_char;
                // SAFETY: the caller passes a NUL-terminated UUID string.
                let uuid = (!key.is_null()).then(|| parse_uuid(unsafe { CStr::from_ptr(key) }.to_bytes())).flatten();
                let index = nvml_handle_by(&NVML_BY_UUID, key).and_then(nvml_index);
                Some((index.unwrap_or(-1), uuid))
            } else if name.starts_with(b"nvmlDeviceGetHandleByPciBusId") {
                nvml_handle_by(&NVML_BY_PCI, arg0 as *const c_char).and_then(nvml_index).map(|i| (i, None))
            } else if name.starts_with(b"nvmlDevice") && !name.starts_with(b"nvmlDeviceGetCount") {
                nvml_index(arg0 as *mut c_void).map(|i| (i, None))
            } else {
                None
            }
        }
    }
}

/// Whether this call acts on one of `devices`.
pub fn hits(devices: &Devices, meta: &Meta, regs: &Regs) -> bool {
    let _guard = Asking::enter();
    let Some((ordinal, uuid)) = target(meta, regs) else {
        return false;
    };
    if devices.has_ordinal(ordinal) {
        return true;
    }
    if devices.uuids().is_empty() {
        return false;
    }
    let uuid = match (uuid, meta.api) {
        (Some(u), _) => Some(u),
        (None, _) if ordinal < 0 => None,
        (None, Api::Nvml) => nvml_uuid(ordinal),
        (None, _) => cuda_uuid(ordinal),
    };
    uuid.is_some_and(|u| devices.has_uuid(&u))
}
