//! Just enough of a BTF reader to find struct member offsets in the running kernel
//! (`/sys/kernel/btf/vmlinux`).
//!
//! The sk_msg program reads a few kernel fields (`sock.sk_user_data`, `sk_psock.msg_tot_len`,
//! four `tcp_sock` sequence numbers) with `bpf_probe_read_kernel`. aya-ebpf has no CO-RE
//! relocations, so the daemon looks the offsets up here and hands them to the program in
//! its globals map. aya-obj parses BTF but does not expose members; the format is small and
//! stable (Documentation/bpf/btf.rst), so this reads only what it needs.

use std::collections::HashMap;

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not BTF data (bad magic or truncated header)")]
    BadHeader,
    #[error("truncated BTF type section")]
    Truncated,
    #[error("unknown BTF kind {0}")]
    UnknownKind(u32),
    #[error("struct {0} not found in BTF")]
    NoStruct(String),
    #[error("struct {0} has no member {1}")]
    NoMember(String, String),
}

#[derive(Debug, Clone)]
struct Member {
    name: u32,
    ty: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name: u32,
    kind: u32,
    /// Referenced type for modifiers and typedefs.
    ty: u32,
    members: Vec<Member>,
}

/// Parsed BTF: the types and the string section.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs: HashMap<String, u32>,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl Btf {
    /// Parses little-endian BTF (what the kernel exposes on x86-64 and arm64).
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let magic = data
            .get(0..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or(BtfError::BadHeader)?;
        if magic != BTF_MAGIC {
            return Err(BtfError::BadHeader);
        }
        let h = |i| u32_at(data, i).ok_or(BtfError::BadHeader);
        let hdr_len = h(4)? as usize;
        let (type_off, type_len) = (h(8)? as usize, h(12)? as usize);
        let (str_off, str_len) = (h(16)? as usize, h(20)? as usize);
        let tsec = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or(BtfError::Truncated)?;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or(BtfError::Truncated)?
            .to_vec();
        // Type id 0 is void.
        let mut types = vec![Type {
            name: 0,
            kind: 0,
            ty: 0,
            members: Vec::new(),
        }];
        let mut at = 0;
        while at < tsec.len() {
            let name = u32_at(tsec, at).ok_or(BtfError::Truncated)?;
            let info = u32_at(tsec, at + 4).ok_or(BtfError::Truncated)?;
            let size_or_type = u32_at(tsec, at + 8).ok_or(BtfError::Truncated)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                1 => 4,                    // INT
                2 | 7..=12 | 16 | 18 => 0, // PTR FWD TYPEDEF VOLATILE CONST RESTRICT FUNC FLOAT TYPE_TAG
                3 => 12,                   // ARRAY
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let off = u32_at(tsec, m + 8).ok_or(BtfError::Truncated)?;
                        members.push(Member {
                            name: u32_at(tsec, m).ok_or(BtfError::Truncated)?,
                            ty: u32_at(tsec, m + 4).ok_or(BtfError::Truncated)?,
                            bit_offset: if kind_flag { off & 0x00ff_ffff } else { off },
                        });
                    }
                    vlen * 12
                }
                6 | 13 => vlen * 8,   // ENUM FUNC_PROTO
                14 | 17 => 4,         // VAR DECL_TAG
                15 | 19 => vlen * 12, // DATASEC ENUM64
                k => return Err(BtfError::UnknownKind(k)),
            };
            at += extra;
            types.push(Type {
                name,
                kind,
                ty: size_or_type,
                members,
            });
        }
        let mut btf = Btf {
            types,
            strings,
            structs: HashMap::new(),
        };
        let mut structs = HashMap::new();
        for (id, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name != 0 {
                // The first definition wins (the kernel's BTF has one per name).
                structs
                    .entry(btf.name(t.name).to_string())
                    .or_insert(id as u32);
            }
        }
        btf.structs = structs;
        Ok(btf)
    }

    /// Reads the running kernel's BTF.
    pub fn from_sys_fs() -> std::io::Result<Btf> {
        let data = std::fs::read("/sys/kernel/btf/vmlinux")?;
        Btf::parse(&data).map_err(std::io::Error::other)
    }

    fn name(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    /// Follows typedefs and modifiers to the underlying type id.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(t)
                    if matches!(
                        t.kind,
                        KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
                    ) =>
                {
                    id = t.ty
                }
                _ => break,
            }
        }
        id
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous struct and union
    /// members.
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self
            .structs
            .get(name)
            .ok_or_else(|| BtfError::NoStruct(name.to_string()))?;
        self.find(id, member, 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| BtfError::NoMember(name.to_string(), member.to_string()))
    }

    fn find(&self, id: u32, member: &str, base_bits: u32) -> Option<u32> {
        let t = self.types.get(id as usize)?;
        for m in &t.members {
            if m.name != 0 && self.name(m.name) == member {
                return Some(base_bits + m.bit_offset);
            }
        }
        for m in t.members.iter().filter(|m| m.name == 0) {
            let inner = self.resolve(m.ty);
            let aggregate = matches!(
                self.types.get(inner as usize),
                Some(t) if t.kind == KIND_STRUCT || t.kind == KIND_UNION
            );
            if aggregate && let Some(bits) = self.find(inner, member, base_bits + m.bit_offset) {
                return Some(bits);
            }
        }
        None
    }
}

/// The kernel field offsets sk_msg needs (see `CaptureGlobals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkMsgOffsets {
    pub sk_user_data: u32,
    pub psock_msg_tot_len: u32,
    pub write_seq: u32,
    pub snd_una: u32,
    pub rcv_nxt: u32,
    pub copied_seq: u32,
}

impl SkMsgOffsets {
    pub fn find(btf: &Btf) -> Result<SkMsgOffsets, BtfError> {
        Ok(SkMsgOffsets {
            sk_user_data: btf.member_offset("sock", "sk_user_data")?,
            psock_msg_tot_len: btf.member_offset("sk_psock", "msg_tot_len")?,
            write_seq: btf.member_offset("tcp_sock", "write_seq")?,
            snd_una: btf.member_offset("tcp_sock", "snd_una")?,
            rcv_nxt: btf.member_offset("tcp_sock", "rcv_nxt")?,
            copied_seq: btf.member_offset("tcp_sock", "copied_seq")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built BTF blob: `struct inner { int a; int b; }` and
    /// `struct outer { int x; union { struct inner in; }; int y; }` (anonymous union).
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0inner\0a\0b\0outer\0x\0in\0y\0";
        let s = |n: &str| {
            let needle = format!("\0{n}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut t = Vec::new();
        let mut push = |w: &[u32]| w.iter().for_each(|v| t.extend_from_slice(&v.to_le_bytes()));
        // 1: int (INT, size 4) + encoding word
        push(&[s("int"), 1 << 24, 4, 32]);
        // 2: struct inner { a @0, b @32 }
        push(&[s("inner"), (4 << 24) | 2, 8, s("a"), 1, 0, s("b"), 1, 32]);
        // 3: anonymous union { in: inner @0 }
        push(&[0, (5 << 24) | 1, 8, s("in"), 2, 0]);
        // 4: const union (modifier chain)
        push(&[0, 10 << 24, 3]);
        // 5: struct outer { x @0, <anon> @32 (via const), y @96 }
        push(&[
            s("outer"),
            (4 << 24) | 3,
            16,
            s("x"),
            1,
            0,
            0,
            4,
            32,
            s("y"),
            1,
            96,
        ]);
        let mut out = Vec::new();
        out.extend_from_slice(&BTF_MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&t);
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn finds_direct_and_anonymous_members() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.member_offset("inner", "b"), Ok(4));
        assert_eq!(btf.member_offset("outer", "y"), Ok(12));
        // Named member of an anonymous union is not looked into (it has a name).
        assert_eq!(
            btf.member_offset("outer", "a"),
            Err(BtfError::NoMember("outer".into(), "a".into()))
        );
        assert_eq!(btf.member_offset("outer", "in"), Ok(4));
        assert_eq!(
            btf.member_offset("nope", "x"),
            Err(BtfError::NoStruct("nope".into()))
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(Btf::parse(b"hello").err(), Some(BtfError::BadHeader));
        let mut b = blob();
        b.truncate(40);
        assert_eq!(Btf::parse(&b).err(), Some(BtfError::Truncated));
    }

    #[test]
    fn running_kernel_has_the_sk_msg_fields() {
        let Ok(btf) = Btf::from_sys_fs() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI kernels have /sys/kernel/btf/vmlinux"
            );
            eprintln!("skipped: no /sys/kernel/btf/vmlinux");
            return;
        };
        let o = SkMsgOffsets::find(&btf).unwrap();
        // tcp_sock starts with struct sock; its own fields come after.
        assert!(o.sk_user_data > 0);
        for f in [o.write_seq, o.snd_una, o.rcv_nxt, o.copied_seq] {
            assert!(f > o.sk_user_data, "{o:?}");
            assert_eq!(f % 4, 0);
        }
        assert_eq!(o.sk_user_data % 8, 0);
    }
}
