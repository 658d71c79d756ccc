//! The GTP-U parser on arbitrary bytes: no panic, the walk stays inside Length, and whatever
//! parses re-emits to a header that parses the same.
#![no_main]

use datapath::wire::{GtpuPacket, GtpuRepr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = GtpuPacket::new_checked(data) else {
        return;
    };
    let Ok(w) = p.walk() else { return };
    assert!(w.payload_off <= w.payload_end && w.payload_end <= data.len());
    if let Ok(r) = GtpuRepr::parse(&p) {
        let mut buf = vec![0u8; r.buffer_len() + r.payload_len];
        r.emit(&mut buf);
        let again = GtpuRepr::parse(&GtpuPacket::new_unchecked(&buf[..])).expect("re-parse");
        assert_eq!(again.teid, r.teid);
        assert_eq!(again.msg_type, r.msg_type);
        assert_eq!(again.payload_len, r.payload_len);
    }
});
