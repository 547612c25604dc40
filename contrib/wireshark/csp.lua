-- Wireshark dissector for the CubeSat Space Protocol (CSP), as libcsp puts it
-- on the wire (1.x: 4-byte header, 2.x: 6-byte header).
--
-- Load it with `wireshark -X lua_script:contrib/wireshark/csp.lua` (or copy it
-- into ~/.local/lib/wireshark/plugins/). See docs/capture.md.
--
-- What it decodes, from the front of a frame and then from its end (CSP
-- carries its trailers after the payload, innermost first):
--   header (v1 or v2, a preference; LINKTYPE_USER1 frames are always v1)
--   payload | SFP (8) | RDP (5) | HMAC (4) | CRC32 (4) [| XTEA nonce (4), v1]
-- and the standard services by port (a request goes to the service port, its
-- reply comes from it).
--
-- Where frames come from:
--   * UDP port 9700 (libcsp's UDP interface: a datagram is header | data) and
--     any other UDP port through "Decode As..." (udp.port, CSP);
--   * KISS over TCP: protocol "csp_kiss" through "Decode As..." on tcp.port or
--     the kiss_tcp_port preference (FEND/FESC framing, KISS CRC verified);
--   * raw CSP frames in pcap/pcapng: LINKTYPE_USER0 (147) carries frames
--     with the version of the preference (default v2), LINKTYPE_USER1 (148)
--     always v1 frames. This is the format the daemon's capture writes.
--
-- Every length is checked before it is read: a short or odd frame gets an
-- expert note and the rest of the frame is shown as bytes, never a Lua error.

local csp = Proto("csp", "CubeSat Space Protocol")
local csp_kiss = Proto("csp_kiss", "CSP KISS framing")

-- Bit operations: Wireshark's Lua 5.2 has bit32, older builds have "bit",
-- Lua 5.3+ has native operators (compiled at run time so 5.2 can parse this).
local bitlib = bit32 or bit
local bxor, band, rshift
if bitlib then
  bxor, band, rshift = bitlib.bxor, bitlib.band, bitlib.rshift
else
  bxor = load("return function(a, b) return a ~ b end")()
  band = load("return function(a, b) return a & b end")()
  rshift = load("return function(a, n) return a >> n end")()
end

-- ---- preferences -----------------------------------------------------------

csp.prefs.version = Pref.enum("Header version",
  2, "CSP header version for UDP, KISS and LINKTYPE_USER0 frames",
  { { 1, "v1", 1 }, { 2, "v2", 2 } }, true)
csp.prefs.udp_port = Pref.uint("UDP port", 9700, "UDP port carrying CSP frames (libcsp's default)")
csp.prefs.kiss_tcp_port = Pref.uint("KISS TCP port", 0, "TCP port carrying KISS-framed CSP (0: none; Decode As works too)")
csp.prefs.services = Pref.bool("Decode services", true, "Decode the standard services (ports 0-6) by port")

-- ---- fields ----------------------------------------------------------------

local prio_names = { [0] = "Critical", [1] = "High", [2] = "Normal", [3] = "Low" }
local yesno = { [0] = "Not set", [1] = "Set" }
local crc_status_names = { [0] = "Bad", [1] = "Good", [2] = "Good (covers header)", [3] = "Unverified" }

local F = {
  version = ProtoField.uint8("csp.version", "Header version"),
  prio = ProtoField.uint8("csp.prio", "Priority", base.DEC, prio_names),
  src = ProtoField.uint16("csp.src", "Source"),
  dst = ProtoField.uint16("csp.dst", "Destination"),
  dport = ProtoField.uint8("csp.dport", "Destination port"),
  sport = ProtoField.uint8("csp.sport", "Source port"),
  flags = ProtoField.uint8("csp.flags", "Flags", base.HEX),
  f_frag = ProtoField.uint8("csp.flags.frag", "FRAG (SFP)", base.DEC, yesno, 0x10),
  f_hmac = ProtoField.uint8("csp.flags.hmac", "HMAC", base.DEC, yesno, 0x08),
  f_xtea = ProtoField.uint8("csp.flags.xtea", "XTEA", base.DEC, yesno, 0x04),
  f_rdp = ProtoField.uint8("csp.flags.rdp", "RDP", base.DEC, yesno, 0x02),
  f_crc = ProtoField.uint8("csp.flags.crc", "CRC32", base.DEC, yesno, 0x01),
  f_reserved = ProtoField.uint8("csp.flags.reserved", "Reserved", base.HEX, nil, 0xE0),
  len = ProtoField.uint16("csp.len", "Data length"),
  payload = ProtoField.bytes("csp.payload", "Payload"),

  crc = ProtoField.uint32("csp.crc", "CRC32", base.HEX),
  crc_status = ProtoField.uint8("csp.crc.status", "CRC32 status", base.DEC, crc_status_names),
  hmac = ProtoField.bytes("csp.hmac", "HMAC (truncated SHA1)"),
  xtea_nonce = ProtoField.uint32("csp.xtea.nonce", "XTEA nonce", base.HEX),

  rdp = ProtoField.bytes("csp.rdp", "RDP header"),
  rdp_flags = ProtoField.uint8("csp.rdp.flags", "RDP flags", base.HEX),
  rdp_counter = ProtoField.uint8("csp.rdp.counter", "Control counter", base.DEC, nil, 0xF0),
  rdp_syn = ProtoField.uint8("csp.rdp.syn", "SYN", base.DEC, yesno, 0x08),
  rdp_ack = ProtoField.uint8("csp.rdp.ack", "ACK", base.DEC, yesno, 0x04),
  rdp_eak = ProtoField.uint8("csp.rdp.eak", "EACK", base.DEC, yesno, 0x02),
  rdp_rst = ProtoField.uint8("csp.rdp.rst", "RST", base.DEC, yesno, 0x01),
  rdp_seq = ProtoField.uint16("csp.rdp.seq", "Sequence number"),
  rdp_ack_num = ProtoField.uint16("csp.rdp.ack_num", "Acknowledgement number"),
  rdp_window = ProtoField.uint32("csp.rdp.window", "Window size"),
  rdp_conn_timeout = ProtoField.uint32("csp.rdp.conn_timeout", "Connection timeout (ms)"),
  rdp_packet_timeout = ProtoField.uint32("csp.rdp.packet_timeout", "Packet timeout (ms)"),
  rdp_delayed_acks = ProtoField.uint32("csp.rdp.delayed_acks", "Delayed acks"),
  rdp_ack_timeout = ProtoField.uint32("csp.rdp.ack_timeout", "Ack timeout (ms)"),
  rdp_ack_delay_count = ProtoField.uint32("csp.rdp.ack_delay_count", "Ack delay count"),
  rdp_eack = ProtoField.uint16("csp.rdp.eack", "Out-of-order sequence number"),

  sfp = ProtoField.bytes("csp.sfp", "SFP trailer"),
  sfp_offset = ProtoField.uint32("csp.sfp.offset", "Offset"),
  sfp_total = ProtoField.uint32("csp.sfp.total", "Total size"),
  sfp_last = ProtoField.bool("csp.sfp.last", "Last fragment"),

  svc = ProtoField.uint8("csp.service", "Service port", base.DEC),
  svc_reply = ProtoField.bool("csp.service.reply", "Reply"),
  svc_ping = ProtoField.bytes("csp.service.ping.data", "Ping data"),
  svc_ps = ProtoField.string("csp.service.ps", "Process list"),
  svc_memfree = ProtoField.uint32("csp.service.memfree", "Free memory (bytes)"),
  svc_buffree = ProtoField.uint32("csp.service.buffree", "Free buffers"),
  svc_uptime = ProtoField.uint32("csp.service.uptime", "Uptime (s)"),
  svc_reboot = ProtoField.uint32("csp.service.reboot", "Reboot magic", base.HEX,
    { [0x80078007] = "Reboot", [0xD1E5529A] = "Shutdown" }),
  cmp_type = ProtoField.uint8("csp.service.cmp.type", "CMP type", base.HEX, { [0x00] = "Request", [0xFF] = "Reply" }),
  cmp_code = ProtoField.uint8("csp.service.cmp.code", "CMP code", base.DEC,
    { [1] = "Ident", [2] = "Route set (v1)", [3] = "Interface stats", [4] = "Peek", [5] = "Poke",
      [6] = "Clock", [7] = "Route set (v2)" }),
  ident_hostname = ProtoField.string("csp.service.cmp.ident.hostname", "Hostname"),
  ident_model = ProtoField.string("csp.service.cmp.ident.model", "Model"),
  ident_revision = ProtoField.string("csp.service.cmp.ident.revision", "Revision"),
  ident_date = ProtoField.string("csp.service.cmp.ident.date", "Date"),
  ident_time = ProtoField.string("csp.service.cmp.ident.time", "Time"),
  route_dest = ProtoField.uint16("csp.service.cmp.route.dest", "Destination"),
  route_via = ProtoField.uint16("csp.service.cmp.route.via", "Via"),
  route_netmask = ProtoField.uint16("csp.service.cmp.route.netmask", "Netmask bits"),
  iface = ProtoField.string("csp.service.cmp.iface", "Interface"),
  mem_addr = ProtoField.uint32("csp.service.cmp.mem.addr", "Address", base.HEX),
  mem_len = ProtoField.uint8("csp.service.cmp.mem.len", "Length"),
  mem_data = ProtoField.bytes("csp.service.cmp.mem.data", "Data"),
  clock_sec = ProtoField.uint32("csp.service.cmp.clock.sec", "Seconds"),
  clock_nsec = ProtoField.uint32("csp.service.cmp.clock.nsec", "Nanoseconds"),

  kiss_cmd = ProtoField.uint8("csp_kiss.command", "KISS command", base.HEX),
  kiss_crc = ProtoField.uint32("csp_kiss.crc", "KISS CRC32", base.HEX),
  kiss_crc_status = ProtoField.uint8("csp_kiss.crc.status", "KISS CRC32 status", base.DEC, crc_status_names),
}

-- The interface statistics counters, in libcsp's order.
local ifstat_names = { "tx", "rx", "tx_error", "rx_error", "drop", "autherr", "frame", "txbytes", "rxbytes", "irq" }
local ifstat_fields = {}
for i, name in ipairs(ifstat_names) do
  local f = ProtoField.uint32("csp.service.cmp.ifstat." .. name, name)
  ifstat_fields[i] = f
  F["ifstat_" .. name] = f
end

local fields = {}
for _, f in pairs(F) do fields[#fields + 1] = f end
csp.fields = fields
csp_kiss.fields = {}

local E = {
  short = ProtoExpert.new("csp.short", "Frame shorter than its header or trailers", expert.group.MALFORMED, expert.severity.ERROR),
  crc_bad = ProtoExpert.new("csp.crc.bad", "CRC32 does not match", expert.group.CHECKSUM, expert.severity.ERROR),
  kiss_crc_bad = ProtoExpert.new("csp_kiss.crc.bad", "KISS CRC32 does not match", expert.group.CHECKSUM, expert.severity.ERROR),
  kiss_escape = ProtoExpert.new("csp_kiss.escape", "Bad KISS escape sequence", expert.group.MALFORMED, expert.severity.ERROR),
  sfp_bad = ProtoExpert.new("csp.sfp.bad", "SFP fragment outside its total size", expert.group.MALFORMED, expert.severity.WARN),
  xtea = ProtoExpert.new("csp.xtea.encrypted", "XTEA encrypted: trailers and payload not decoded", expert.group.SECURITY, expert.severity.NOTE),
  svc_bad = ProtoExpert.new("csp.service.bad", "Service message of an unexpected length", expert.group.MALFORMED, expert.severity.WARN),
}
csp.experts = { E.short, E.crc_bad, E.sfp_bad, E.xtea, E.svc_bad }
csp_kiss.experts = { E.kiss_crc_bad, E.kiss_escape }

-- ---- CRC-32C ---------------------------------------------------------------

-- Castagnoli, reflected polynomial 0x82F63B78, init and xorout 0xFFFFFFFF.
local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if c % 2 == 1 then c = bxor(rshift(c, 1), 0x82F63B78) else c = rshift(c, 1) end
  end
  crc_table[i] = c
end

-- CRC-32C over a list of ByteArrays.
local function crc32c(parts)
  local c = 0xFFFFFFFF
  for _, ba in ipairs(parts) do
    for i = 0, ba:len() - 1 do
      c = bxor(crc_table[band(bxor(c, ba:get_index(i)), 0xFF)], rshift(c, 8))
    end
  end
  return bxor(c, 0xFFFFFFFF) % 0x100000000
end

-- ---- services --------------------------------------------------------------

local SERVICE_NAMES = { [0] = "CMP", [1] = "ping", [2] = "ps", [3] = "memfree", [4] = "reboot", [5] = "buffree", [6] = "uptime" }
local CMP_IDENT_LEN = 93
local IFACE_LEN = 11

local function add_u32(tree, field, tvb, off)
  tree:add(field, tvb(off, 4))
end

local function dissect_cmp(tvb, tree, pinfo)
  local len = tvb:len()
  if len < 2 then
    tree:add_proto_expert_info(E.svc_bad)
    return "CMP"
  end
  local ty, code = tvb(0, 1):uint(), tvb(1, 1):uint()
  tree:add(F.cmp_type, tvb(0, 1))
  tree:add(F.cmp_code, tvb(1, 1))
  local kind = ty == 0xFF and "reply" or "request"
  local needs = { [1] = CMP_IDENT_LEN, [2] = 2 + 2 + IFACE_LEN, [3] = 2 + IFACE_LEN, [4] = 2 + 5, [5] = 2 + 5,
    [6] = 2 + 8, [7] = 2 + 6 + IFACE_LEN }
  local need = needs[code]
  -- An interface stats reply carries the ten counters after the name.
  if code == 3 and ty == 0xFF then need = 2 + IFACE_LEN + 40 end
  if need == nil then return "CMP code " .. code end
  if len < need then
    tree:add_proto_expert_info(E.svc_bad)
    return "CMP " .. kind .. " (short)"
  end
  if code == 1 then
    local o = 2
    for _, p in ipairs({ { F.ident_hostname, 20 }, { F.ident_model, 30 }, { F.ident_revision, 20 },
      { F.ident_date, 12 }, { F.ident_time, 9 } }) do
      tree:add(p[1], tvb(o, p[2]))
      o = o + p[2]
    end
    return "CMP ident " .. kind .. (ty == 0xFF and (" " .. tvb(2, 20):stringz()) or "")
  elseif code == 2 then
    tree:add(F.route_dest, tvb(2, 1), tvb(2, 1):uint())
    tree:add(F.route_via, tvb(3, 1), tvb(3, 1):uint())
    tree:add(F.iface, tvb(4, IFACE_LEN))
    return "CMP route set " .. kind
  elseif code == 7 then
    tree:add(F.route_dest, tvb(2, 2))
    tree:add(F.route_via, tvb(4, 2))
    tree:add(F.route_netmask, tvb(6, 2))
    tree:add(F.iface, tvb(8, IFACE_LEN))
    return "CMP route set " .. kind
  elseif code == 3 then
    tree:add(F.iface, tvb(2, IFACE_LEN))
    if ty == 0xFF then
      for i, f in ipairs(ifstat_fields) do add_u32(tree, f, tvb, 2 + IFACE_LEN + (i - 1) * 4) end
    end
    return "CMP ifstat " .. kind .. " " .. tvb(2, IFACE_LEN):stringz()
  elseif code == 4 or code == 5 then
    tree:add(F.mem_addr, tvb(2, 4))
    tree:add(F.mem_len, tvb(6, 1))
    if len > 7 then tree:add(F.mem_data, tvb(7)) end
    return (code == 4 and "CMP peek " or "CMP poke ") .. kind
  else
    add_u32(tree, F.clock_sec, tvb, 2)
    add_u32(tree, F.clock_nsec, tvb, 6)
    return "CMP clock " .. kind
  end
end

-- Decodes `tvb` (the payload) as service `port`; returns a summary.
local function dissect_service(tvb, tree, pinfo, port, reply)
  local name = SERVICE_NAMES[port]
  local st = tree:add(F.svc, port):set_generated()
  st:append_text(" (" .. name .. ")")
  tree:add(F.svc_reply, reply):set_generated()
  local len = tvb:len()
  local word = { [3] = F.svc_memfree, [5] = F.svc_buffree, [6] = F.svc_uptime }
  if port == 0 then
    return dissect_cmp(tvb, tree, pinfo)
  elseif port == 1 then
    if len > 0 then tree:add(F.svc_ping, tvb()) end
  elseif port == 2 then
    if reply and len > 0 then tree:add(F.svc_ps, tvb()) end
  elseif port == 4 then
    if len == 4 then
      tree:add(F.svc_reboot, tvb(0, 4))
      return (tvb(0, 4):uint() == 0xD1E5529A) and "shutdown" or "reboot"
    end
    tree:add_proto_expert_info(E.svc_bad)
  elseif reply then
    if len == 4 then
      tree:add(word[port], tvb(0, 4))
      return name .. " reply " .. tvb(0, 4):uint()
    end
    tree:add_proto_expert_info(E.svc_bad)
  end
  return name .. (reply and " reply" or " request")
end

-- ---- CSP frame -------------------------------------------------------------

local function parse_header(tvb, version)
  if version == 1 then
    local w = tvb(0, 4):uint()
    return {
      prio = math.floor(w / 2 ^ 30) % 4,
      src = math.floor(w / 2 ^ 25) % 32,
      dst = math.floor(w / 2 ^ 20) % 32,
      dport = math.floor(w / 2 ^ 14) % 64,
      sport = math.floor(w / 2 ^ 8) % 64,
      flags = w % 256,
    }
  end
  local hi, lo = tvb(0, 2):uint(), tvb(2, 4):uint()
  local w = hi * 2 ^ 32 + lo -- 48 bits: exact in a Lua double
  return {
    prio = math.floor(w / 2 ^ 46) % 4,
    dst = math.floor(w / 2 ^ 32) % 16384,
    src = math.floor(w / 2 ^ 18) % 16384,
    dport = math.floor(w / 2 ^ 12) % 64,
    sport = math.floor(w / 2 ^ 6) % 64,
    flags = w % 64,
  }
end

-- Dissects one complete CSP frame (header | data) of `version`.
local function dissect_frame(tvb, pinfo, root, version)
  pinfo.cols.protocol = "CSP"
  local hlen = version == 1 and 4 or 6
  local tree = root:add(csp, tvb(), "CubeSat Space Protocol v" .. version)
  tree:add(F.version, version):set_generated()
  if tvb:len() < hlen then
    tree:add_proto_expert_info(E.short)
    pinfo.cols.info = "CSP (short frame)"
    return tvb:len()
  end
  local h = parse_header(tvb, version)
  local hr = tvb(0, hlen)
  local ht = tree:add(hr, "Header")
  ht:add(F.prio, hr, h.prio)
  ht:add(F.src, hr, h.src)
  ht:add(F.dst, hr, h.dst)
  ht:add(F.dport, hr, h.dport)
  ht:add(F.sport, hr, h.sport)
  local fr = tvb(hlen - 1, 1)
  local ft = ht:add(F.flags, fr, h.flags)
  for _, f in ipairs({ F.f_frag, F.f_hmac, F.f_xtea, F.f_rdp, F.f_crc }) do ft:add(f, fr, h.flags) end
  if version == 1 then ft:add(F.f_reserved, fr, h.flags) end
  tree:append_text(string.format(", %d:%d -> %d:%d", h.src, h.sport, h.dst, h.dport))

  local data = tvb:len() - hlen
  tree:add(F.len, data):set_generated()
  local info = { string.format("%d:%d \226\134\146 %d:%d", h.src, h.sport, h.dst, h.dport) }

  local function has(bitv) return math.floor(h.flags / bitv) % 2 == 1 end
  -- `stop` is the end of what is still undecoded: trailers come off the end.
  local stop = tvb:len()
  local function trailer(n)
    if stop - hlen < n then
      tree:add_proto_expert_info(E.short)
      return nil
    end
    stop = stop - n
    return stop
  end

  if version == 1 and has(0x04) then
    -- XTEA (1.x): CRC, HMAC and payload are encrypted; only the nonce is clear.
    local at = trailer(4)
    if at then tree:add(F.xtea_nonce, tvb(at, 4)) end
    tree:add_proto_expert_info(E.xtea)
    if stop > hlen then tree:add(F.payload, tvb(hlen, stop - hlen)) end
    pinfo.cols.info = table.concat(info, " ") .. " [XTEA]"
    return tvb:len()
  end
  if has(0x01) then
    local at = trailer(4)
    if at then
      local got = tvb(at, 4):uint()
      -- libcsp sends the CRC over the data only; 2.x also accepts one that
      -- includes the header.
      local status = 0
      local body = tvb:bytes(hlen, at - hlen)
      if crc32c({ body }) == got then
        status = 1
      elseif crc32c({ tvb:bytes(0, hlen), body }) == got then
        status = 2
      end
      tree:add(F.crc, tvb(at, 4))
      tree:add(F.crc_status, tvb(at, 4), status):set_generated()
      if status == 0 then
        tree:add_proto_expert_info(E.crc_bad)
        info[#info + 1] = "[bad CRC]"
      end
    end
  end
  if has(0x08) then
    local at = trailer(4)
    if at then tree:add(F.hmac, tvb(at, 4)) end
  end
  local rdp_flags
  if has(0x02) then
    local at = trailer(5)
    if at then
      local rr = tvb(at, 5)
      local rt = tree:add(F.rdp, rr)
      local fl = tvb(at, 1):uint()
      local ftr = rt:add(F.rdp_flags, tvb(at, 1))
      for _, f in ipairs({ F.rdp_counter, F.rdp_syn, F.rdp_ack, F.rdp_eak, F.rdp_rst }) do ftr:add(f, tvb(at, 1)) end
      rt:add(F.rdp_seq, tvb(at + 1, 2))
      rt:add(F.rdp_ack_num, tvb(at + 3, 2))
      rdp_flags = fl % 16
      local names = {}
      for _, p in ipairs({ { 8, "SYN" }, { 4, "ACK" }, { 2, "EACK" }, { 1, "RST" } }) do
        if math.floor(rdp_flags / p[1]) % 2 == 1 then names[#names + 1] = p[2] end
      end
      local summary = string.format("RDP %s seq=%d ack=%d", table.concat(names, "|"),
        tvb(at + 1, 2):uint(), tvb(at + 3, 2):uint())
      rt:set_text(summary)
      info[#info + 1] = summary
      local syn = math.floor(rdp_flags / 8) % 2 == 1
      local eak = math.floor(rdp_flags / 2) % 2 == 1
      if syn and stop - hlen >= 24 then
        -- The SYN's payload: six big-endian u32 options.
        local o = stop - 24
        for i, f in ipairs({ F.rdp_window, F.rdp_conn_timeout, F.rdp_packet_timeout, F.rdp_delayed_acks,
          F.rdp_ack_timeout, F.rdp_ack_delay_count }) do
          rt:add(f, tvb(o + (i - 1) * 4, 4))
        end
        stop = o
      elseif eak then
        -- Old libcsp versions list out-of-order sequence numbers as u16s.
        local o = hlen
        while o + 2 <= stop do
          rt:add(F.rdp_eack, tvb(o, 2))
          o = o + 2
        end
        stop = hlen
      end
    end
  end
  if has(0x10) and stop - hlen >= 8 then
    local at = stop - 8
    local sr = tvb(at, 8)
    local st = tree:add(F.sfp, sr)
    local off, total = tvb(at, 4):uint(), tvb(at + 4, 4):uint()
    st:add(F.sfp_offset, tvb(at, 4))
    st:add(F.sfp_total, tvb(at + 4, 4))
    local fraglen = at - hlen
    st:add(F.sfp_last, off + fraglen == total):set_generated()
    st:set_text(string.format("SFP offset=%d total=%d", off, total))
    if off + fraglen > total then st:add_proto_expert_info(E.sfp_bad) end
    info[#info + 1] = string.format("SFP %d/%d", off + fraglen, total)
    stop = at
  end

  if stop > hlen then tree:add(F.payload, tvb(hlen, stop - hlen)) end
  if csp.prefs.services and rdp_flags == nil and not has(0x10) then
    -- Service ports: a request is sent to one, its reply comes from one.
    local port, reply
    if SERVICE_NAMES[h.dport] and not SERVICE_NAMES[h.sport] then
      port, reply = h.dport, false
    elseif SERVICE_NAMES[h.sport] and not SERVICE_NAMES[h.dport] then
      port, reply = h.sport, true
    end
    if port then
      local sub = stop > hlen and tvb(hlen, stop - hlen):tvb() or ByteArray.new(""):tvb("empty")
      local svc = tree:add(csp, tvb(hlen, stop - hlen), "Service")
      info[#info + 1] = dissect_service(sub, svc, pinfo, port, reply)
      svc:set_text("Service: " .. info[#info])
    end
  end
  pinfo.cols.info = table.concat(info, " ")
  return tvb:len()
end

local function pref_version() return csp.prefs.version end

function csp.dissector(tvb, pinfo, root)
  return dissect_frame(tvb, pinfo, root, pref_version())
end

-- LINKTYPE_USER1: frames known to be v1 whatever the preference says.
local csp_v1 = Proto("csp_v1", "CSP v1 frames (LINKTYPE_USER1)")
function csp_v1.dissector(tvb, pinfo, root)
  return dissect_frame(tvb, pinfo, root, 1)
end

-- ---- KISS ------------------------------------------------------------------

local FEND, FESC, TFEND, TFESC = 0xC0, 0xDB, 0xDC, 0xDD

-- Unescapes bytes [from, to) of `tvb`; returns a ByteArray and whether every
-- escape was valid.
local function kiss_unescape(tvb, from, to)
  local out = ByteArray.new()
  out:set_size(to - from)
  local n, ok, i = 0, true, from
  while i < to do
    local b = tvb(i, 1):uint()
    if b == FESC then
      local nb = (i + 1 < to) and tvb(i + 1, 1):uint() or -1
      if nb == TFEND then b = FEND elseif nb == TFESC then b = FESC else ok = false end
      i = i + 1
    end
    out:set_index(n, b % 256)
    n = n + 1
    i = i + 1
  end
  out:set_size(n)
  return out, ok
end

-- One KISS frame (between FENDs, exclusive): command byte, escaped CSP
-- frame, then libcsp's KISS CRC32 over the data after the CSP header.
local function dissect_kiss_frame(tvb, from, to, pinfo, root)
  local kt = root:add(csp_kiss, tvb(from, to - from))
  kt:add(F.kiss_cmd, tvb(from, 1))
  local raw, ok = kiss_unescape(tvb, from + 1, to)
  if not ok then kt:add_proto_expert_info(E.kiss_escape) end
  local version = pref_version()
  local hlen = version == 1 and 4 or 6
  if raw:len() < hlen + 4 then
    kt:add_proto_expert_info(E.short)
    return
  end
  local frame = raw:subset(0, raw:len() - 4)
  local ctvb = raw:tvb("KISS payload")
  local got = ctvb(raw:len() - 4, 4):uint()
  local status = crc32c({ frame:subset(hlen, frame:len() - hlen) }) == got and 1 or 0
  kt:add(F.kiss_crc, ctvb(raw:len() - 4, 4))
  kt:add(F.kiss_crc_status, ctvb(raw:len() - 4, 4), status):set_generated()
  if status == 0 then kt:add_proto_expert_info(E.kiss_crc_bad) end
  dissect_frame(ctvb(0, frame:len()):tvb(), pinfo, root, version)
end

-- A TCP byte stream of KISS frames. Frames split over segments are
-- reassembled by TCP (desegment: from the FEND that opens the unfinished
-- frame); bytes before the first FEND of a capture are skipped.
function csp_kiss.dissector(tvb, pinfo, root)
  local len = tvb:len()
  local i = 0
  local frames = 0
  while i < len do
    -- Find a frame start.
    while i < len and tvb(i, 1):uint() ~= FEND do i = i + 1 end
    -- Skip consecutive FENDs (an end followed by a start).
    local start = i
    while start < len and tvb(start, 1):uint() == FEND do start = start + 1 end
    if start >= len then
      -- The stream ends in FENDs: the last one may open the next frame, so
      -- keep it for the next segment (a lone FEND left at the end of a
      -- capture is harmless).
      pinfo.desegment_offset = len - 1
      pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
      break
    end
    local stop = start
    while stop < len and tvb(stop, 1):uint() ~= FEND do stop = stop + 1 end
    if stop >= len then
      -- Incomplete frame: ask TCP for more from its first FEND on.
      pinfo.desegment_offset = start - 1
      pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
      return len
    end
    dissect_kiss_frame(tvb, start, stop, pinfo, root)
    frames = frames + 1
    i = stop
  end
  if frames > 1 then pinfo.cols.info:prepend(frames .. " KISS frames: ") end
  return len
end

-- ---- registration ----------------------------------------------------------

local udp_table = DissectorTable.get("udp.port")
local tcp_table = DissectorTable.get("tcp.port")
local registered_udp, registered_tcp = 0, 0

local function register_ports()
  if registered_udp ~= 0 then udp_table:remove(registered_udp, csp) end
  registered_udp = csp.prefs.udp_port
  if registered_udp ~= 0 then udp_table:add(registered_udp, csp) end
  if registered_tcp ~= 0 then tcp_table:remove(registered_tcp, csp_kiss) end
  registered_tcp = csp.prefs.kiss_tcp_port
  if registered_tcp ~= 0 then tcp_table:add(registered_tcp, csp_kiss) end
end

function csp.prefs_changed()
  register_ports()
end

register_ports()
-- Offer both in "Decode As..." for any port.
pcall(function() udp_table:add_for_decode_as(csp) end)
pcall(function() tcp_table:add_for_decode_as(csp_kiss) end)

-- Raw CSP frames in pcap/pcapng (the daemon's capture): USER0 by the
-- version preference, USER1 always v1.
local encaps = wtap_encaps or wtap
local wtap_table = DissectorTable.get("wtap_encap")
wtap_table:add(encaps.USER0, csp)
wtap_table:add(encaps.USER1, csp_v1)
