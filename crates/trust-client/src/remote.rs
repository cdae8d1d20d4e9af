//! The trust server, over a session: bounded metadata downloads and multipart uploads.

use registry::client::{NetError, Session};
use std::sync::Arc;
use tuf::client::{FetchError, Fetched, Remote};

use tuf::{Gun, RoleName};

/// One role's file in an upload.
pub type Part = (RoleName, Arc<[u8]>);

pub struct TrustRemote {
    pub session: Session,
    pub gun: Gun,
    /// `pull`, or `pull,push` for commands that write (docker's scopes).
    pub actions: &'static str,
}

impl TrustRemote {
    pub fn scope(&self) -> String {
        format!("repository:{}:{}", self.gun, self.actions)
    }

    fn path(&self, file: &str) -> String {
        format!("/v2/{}/_trust/tuf/{file}", self.gun)
    }

    /// `POST /v2/<gun>/_trust/tuf/` with one part per role (filename = role name). The
    /// body is streamed from the parts, never copied into one buffer.
    pub fn publish(&self, parts: &[Part]) -> Result<(), NetError> {
        use std::io::{Cursor, Read};
        let mut rnd = [0u8; 12];
        let _ = aws_lc_rs::rand::fill(&mut rnd);
        let boundary = format!("notarium{}", hex::encode(rnd));
        let mut pieces: Vec<Arc<[u8]>> = Vec::with_capacity(parts.len() * 2 + 1);
        for (role, data) in parts {
            let head = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{role}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            );
            pieces.push(head.into_bytes().into());
            pieces.push(data.clone());
            pieces.push(Arc::from(&b"\r\n"[..]));
        }
        pieces.push(format!("--{boundary}--\r\n").into_bytes().into());
        let len: u64 = pieces.iter().map(|p| p.len() as u64).sum();
        let reader: Box<dyn Read + Send> = pieces.into_iter().fold(
            Box::new(std::io::empty()) as Box<dyn Read + Send>,
            |acc, p| Box::new(acc.chain(Cursor::new(p))),
        );
        let body = reqwest::blocking::Body::sized(reader, len);
        let path = format!("/v2/{}/_trust/tuf/", self.gun);
        let url = format!("{}{path}", self.session.base());
        let rb = self
            .session
            .request(reqwest::Method::POST, &path, &self.scope())?
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        let r = self.session.send(rb, &url)?;
        match r.status().as_u16() {
            200 => Ok(()),
            status => Err(NetError::Status {
                url,
                status,
                body: registry::client::error_summary(r),
            }),
        }
    }

    /// `GET <role>.key`: the server's key for a role it manages.
    pub fn server_key(&self, role: &str) -> Result<tuf::PublicKey, NetError> {
        let file = format!("{role}.key");
        let url = format!("{}{}", self.session.base(), self.path(&file));
        match self
            .session
            .get(&self.path(&file), &self.scope(), 64 * 1024)?
        {
            Some(b) => serde_json::from_slice(&b).map_err(|e| NetError::Io {
                url,
                cause: format!("not a key: {e}"),
            }),
            None => Err(NetError::Status {
                url,
                status: 404,
                body: String::new(),
            }),
        }
    }

    /// `POST <role>.key`: a new server key for a role (rotation).
    /// `POST <role>.key`: a new key held by the server (`algorithm`: `ecdsa` or
    /// `ed25519`, as a query the server reads; its default when `None`).
    pub fn rotate_server_key(
        &self,
        role: &str,
        algorithm: Option<&str>,
    ) -> Result<tuf::PublicKey, NetError> {
        let mut path = self.path(&format!("{role}.key"));
        if let Some(a) = algorithm {
            path.push_str(&format!("?algorithm={a}"));
        }
        let url = format!("{}{path}", self.session.base());
        let r = self.session.send(
            self.session.request(
                reqwest::Method::POST,
                &path,
                &format!("repository:{}:*", self.gun),
            )?,
            &url,
        )?;
        let status = r.status().as_u16();
        if status != 200 {
            return Err(NetError::Status {
                url,
                status,
                body: registry::client::error_summary(r),
            });
        }
        let b = registry::client::read_limited(r, 64 * 1024, &url)?;
        serde_json::from_slice(&b).map_err(|e| NetError::Io {
            url,
            cause: format!("not a key: {e}"),
        })
    }
}

impl Remote for TrustRemote {
    fn fetch(&mut self, file: &str, limit: u64) -> Result<Fetched, FetchError> {
        match self.session.get(&self.path(file), &self.scope(), limit) {
            Ok(Some(b)) => Ok(Fetched::Found(b)),
            Ok(None) => Ok(Fetched::NotFound),
            Err(NetError::TooLarge { .. }) => Ok(Fetched::TooLarge),
            Err(e) => Err(FetchError(e.to_string())),
        }
    }
}

/// The role a metadata file name refers to (for messages).
pub fn role_of(file: &str) -> &str {
    file.split('.').next().unwrap_or(file)
}
