//! A minimal SMTP server on loopback that records each message, enough for
//! lettre's plain-text transport (EHLO, MAIL, RCPT, DATA, QUIT).

use parking_lot::Mutex;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Clone, Default)]
pub struct SmtpSink {
    pub mails: Arc<Mutex<Vec<Mail>>>,
    pub port: u16,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = SmtpSink {
            mails: Arc::default(),
            port: listener.local_addr().unwrap().port(),
        };
        let mails = sink.mails.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let mails = mails.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    w.write_all(b"220 sink ESMTP\r\n").await.ok();
                    let mut to = Vec::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let upper = line.to_ascii_uppercase();
                        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                            w.write_all(b"250-sink\r\n250 8BITMIME\r\n").await.ok();
                        } else if upper.starts_with("MAIL FROM") {
                            to.clear();
                            w.write_all(b"250 OK\r\n").await.ok();
                        } else if upper.starts_with("RCPT TO") {
                            to.push(
                                line[8..]
                                    .trim()
                                    .trim_matches(|c| c == '<' || c == '>' || c == ':')
                                    .to_string(),
                            );
                            w.write_all(b"250 OK\r\n").await.ok();
                        } else if upper == "DATA" {
                            w.write_all(b"354 go on\r\n").await.ok();
                            let mut data = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                data.push_str(&l);
                                data.push('\n');
                            }
                            mails.lock().push(Mail {
                                to: to.clone(),
                                data,
                            });
                            w.write_all(b"250 queued\r\n").await.ok();
                        } else if upper == "QUIT" {
                            w.write_all(b"221 bye\r\n").await.ok();
                            return;
                        } else {
                            w.write_all(b"250 OK\r\n").await.ok();
                        }
                    }
                });
            }
        });
        sink
    }
}
