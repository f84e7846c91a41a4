//! The open inference protocol's (KServe v2) infer messages, as the remote backend sends and
//! reads them: a request with the two INT64 inputs, and the FP32 logits of its answer.
//!
//! Two encodings. Plain JSON puts every tensor in a `data` list. The binary tensor data
//! extension (Triton, KServe) sends a JSON header without the data, followed by the raw
//! little-endian tensors in the header's order, and says the header's length in the
//! `Inference-Header-Content-Length` HTTP header; each tensor's `binary_data_size`
//! parameter gives its bytes. The answer comes back the same way when the request asks for
//! it. A Python server parses a list of numbers through its JSON and validation layers, so
//! the binary form saves that server most of its per-batch cost.

use serde::{Deserialize, Serialize};

use super::backend::PaddedBatch;

/// The HTTP header that gives the JSON header's length in a binary body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

#[derive(Serialize)]
struct Tensor<'a> {
    name: &'static str,
    shape: [usize; 2],
    datatype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a [i64]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
}

#[derive(Serialize)]
struct BinaryWanted {
    binary_data: bool,
}

#[derive(Serialize)]
struct Requested {
    name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryWanted>,
}

#[derive(Serialize)]
struct InferRequest<'a> {
    /// Echoed by the server (KServe requires one to answer).
    id: &'a str,
    inputs: [Tensor<'a>; 2],
    outputs: [Requested; 1],
}

/// An encoded request: its body, and with the binary extension the JSON header's length.
pub struct Request {
    pub body: Vec<u8>,
    pub header_len: Option<usize>,
}

/// The infer request of `batch`, binary or plain JSON.
pub fn encode_request(id: &str, batch: &PaddedBatch, binary: bool) -> Result<Request, String> {
    let bytes = batch.ids.len() * 8;
    let tensor = |name, data| Tensor {
        name,
        shape: [batch.batch, batch.seq],
        datatype: "INT64",
        data: (!binary).then_some(data),
        parameters: binary.then_some(BinarySize {
            binary_data_size: bytes,
        }),
    };
    let request = InferRequest {
        id,
        inputs: [
            tensor("input_ids", &batch.ids),
            tensor("attention_mask", &batch.mask),
        ],
        outputs: [Requested {
            name: "logits",
            parameters: binary.then_some(BinaryWanted { binary_data: true }),
        }],
    };
    let mut body = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    if !binary {
        return Ok(Request {
            body,
            header_len: None,
        });
    }
    let header_len = body.len();
    body.reserve(2 * bytes);
    for v in batch.ids.iter().chain(&batch.mask) {
        body.extend_from_slice(&v.to_le_bytes());
    }
    Ok(Request {
        body,
        header_len: Some(header_len),
    })
}

#[derive(Deserialize, Default)]
struct OutputParameters {
    binary_data_size: Option<usize>,
}

#[derive(Deserialize)]
struct OutputTensor {
    name: String,
    datatype: String,
    shape: Vec<i64>,
    /// Row-major and flat, as Triton and KServe send it (absent when sent in binary).
    #[serde(default)]
    data: Option<Vec<f32>>,
    #[serde(default)]
    parameters: Option<OutputParameters>,
}

#[derive(Deserialize)]
struct InferResponse {
    outputs: Vec<OutputTensor>,
}

/// The logits of an infer answer for `rows` requests of `labels` outputs. `header_len`:
/// the answer's `Inference-Header-Content-Length`, when it came in the binary form.
pub fn decode_answer(
    body: &[u8],
    header_len: Option<usize>,
    rows: usize,
    labels: usize,
) -> Result<Vec<f32>, String> {
    let json_len = header_len.unwrap_or(body.len());
    let json = body
        .get(..json_len)
        .ok_or("binary header longer than the answer")?;
    let answer: InferResponse = serde_json::from_slice(json).map_err(|e| format!("answer: {e}"))?;
    // Binary outputs follow the header in the order of `outputs`.
    let mut offset = json_len;
    let mut logits = None;
    for out in answer.outputs {
        let size = out.parameters.as_ref().and_then(|p| p.binary_data_size);
        if out.name != "logits" {
            offset += size.unwrap_or(0);
            continue;
        }
        let want = [rows as i64, labels as i64];
        if out.datatype != "FP32" || out.shape != want {
            return Err(format!(
                "logits {} {:?}, expected FP32 {want:?}",
                out.datatype, out.shape
            ));
        }
        let values = match (out.data, size) {
            (Some(data), _) => data,
            (None, Some(size)) => {
                let raw = body
                    .get(offset..offset + size)
                    .ok_or("binary logits past the end of the answer")?;
                raw.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
            (None, None) => return Err("logits without data".into()),
        };
        logits = Some(values);
        break;
    }
    let logits = logits.ok_or("no logits in the answer")?;
    if logits.len() != rows * labels {
        return Err(format!("{} logits for {rows} x {labels}", logits.len()));
    }
    Ok(logits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> PaddedBatch {
        PaddedBatch::new(&[vec![0, 7, 2], vec![0, 2]])
    }

    #[test]
    fn json_requests_carry_both_tensors_as_lists() {
        let r = encode_request("7", &batch(), false).unwrap();
        assert_eq!(r.header_len, None);
        let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(json["id"], "7");
        assert_eq!(json["inputs"][0]["name"], "input_ids");
        assert_eq!(json["inputs"][0]["shape"], serde_json::json!([2, 3]));
        assert_eq!(
            json["inputs"][0]["data"],
            serde_json::json!([0, 7, 2, 0, 2, 0])
        );
        assert_eq!(json["inputs"][1]["name"], "attention_mask");
        assert_eq!(json["inputs"][1]["datatype"], "INT64");
        assert_eq!(
            json["inputs"][1]["data"],
            serde_json::json!([1, 1, 1, 1, 1, 0])
        );
        assert_eq!(json["outputs"][0], serde_json::json!({"name": "logits"}));
    }

    #[test]
    fn binary_requests_put_the_raw_tensors_after_the_header() {
        let r = encode_request("7", &batch(), true).unwrap();
        let n = r.header_len.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&r.body[..n]).unwrap();
        assert!(json["inputs"][0].get("data").is_none());
        assert_eq!(json["inputs"][0]["parameters"]["binary_data_size"], 48);
        assert_eq!(json["outputs"][0]["parameters"]["binary_data"], true);
        let raw: Vec<i64> = r.body[n..]
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(raw, [0, 7, 2, 0, 2, 0, 1, 1, 1, 1, 1, 0]);
    }

    #[test]
    fn answers_are_read_in_either_form_and_checked_against_the_batch() {
        let json = |shape: &str, data: &str| {
            format!(
                r#"{{"model_name":"m","outputs":[{{"name":"other","datatype":"FP32","shape":[1],"data":[1]}},
                {{"name":"logits","datatype":"FP32","shape":{shape},"data":{data}}}]}}"#
            )
            .into_bytes()
        };
        let ok = decode_answer(&json("[2,2]", "[1,2,3,4]"), None, 2, 2).unwrap();
        assert_eq!(ok, [1.0, 2.0, 3.0, 4.0]);
        assert!(decode_answer(&json("[1,4]", "[1,2,3,4]"), None, 2, 2).is_err());
        assert!(decode_answer(&json("[2,2]", "[1,2,3]"), None, 2, 2).is_err());

        let header = br#"{"outputs":[{"name":"other","datatype":"FP32","shape":[1],"parameters":{"binary_data_size":4}},
            {"name":"logits","datatype":"FP32","shape":[1,2],"parameters":{"binary_data_size":8}}]}"#;
        let mut body = header.to_vec();
        for v in [9.0f32, 0.5, -1.5] {
            body.extend_from_slice(&v.to_le_bytes());
        }
        let got = decode_answer(&body, Some(header.len()), 1, 2).unwrap();
        assert_eq!(got, [0.5, -1.5]);
        assert!(decode_answer(&body[..body.len() - 1], Some(header.len()), 1, 2).is_err());
    }
}
