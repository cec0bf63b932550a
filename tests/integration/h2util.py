"""An HTTP/2 client over TLS with python3-h2, for the tests: raw frames, exact control."""

import socket
import ssl

import h2.config
import h2.connection
import h2.events


class H2Client:
    """An HTTP/2 connection over TLS with python3-h2: raw frames, exact control."""

    def __init__(self, port, name="a.test", timeout=15):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=name)
        assert self.sock.selected_alpn_protocol() == "h2"
        # No checks of what we send: the tests send what a hostile client would.
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False,
            normalize_outbound_headers=False))
        self.conn.initiate_connection()
        self.flush()
        self.events = []
        self.fields = {}  # stream id: its response's fields in order, repeats kept

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method, path, headers=(), body=None, authority="a.test", end=True):
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":path", path), (":scheme", "https"), (":authority", authority)]
        self.conn.send_headers(sid, hs + list(headers), end_stream=end and body is None)
        self.flush()
        if body is not None:
            self.send_body(sid, body, end)
        return sid

    def send_body(self, sid, body, end=True):
        """Sends body as the windows allow, waiting for WINDOW_UPDATEs in between."""
        while True:
            n = min(len(body), self.conn.local_flow_control_window(sid),
                    self.conn.max_outbound_frame_size)
            if n or not body:
                self.conn.send_data(sid, body[:n], end_stream=end and n == len(body))
                self.flush()
                body = body[n:]
                if not body:
                    return
            else:
                self.pump()

    def pump(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        evs = self.conn.receive_data(data)
        for e in evs:
            if isinstance(e, h2.events.DataReceived):
                self.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        self.flush()
        self.events += evs
        return evs

    def response(self, sid):
        """(status, headers dict, body) of stream sid, or ("reset", code) if it was reset."""
        headers, body = None, b""
        while True:
            for e in list(self.events):
                if getattr(e, "stream_id", None) != sid:
                    continue
                self.events.remove(e)
                if isinstance(e, h2.events.ResponseReceived):
                    headers = dict(e.headers)
                    self.fields[sid] = list(e.headers)
                elif isinstance(e, h2.events.DataReceived):
                    body += e.data
                elif isinstance(e, h2.events.StreamReset):
                    return "reset", e.error_code, None
                elif isinstance(e, h2.events.StreamEnded):
                    return int(headers[":status"]), headers, body
            self.pump()

    def close(self):
        self.sock.close()
