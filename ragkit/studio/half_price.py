"""Half-price batches: a batch job's takes sent through Gemini's Batch API, results within a day.

The same job as ragkit.studio.batch (state on disk, review, approve, cost), run by the same runner
(ragkit.jobs.resumable): only the send step differs. Instead of one request per take, the pending takes
go to Gemini as one batch (``client.batches.create``): inline when the requests come to less than 20 MB,
else as a JSONL file uploaded first (``client.files.upload``). The batch's name is written to the job's
state at once, so any process can resume polling it (``batches.get``) after a restart or a kill, and a
second submission never happens while one is on its way. When it has finished, each answer goes
through the same check and bookkeeping as a direct one, at the batch price: half the list price.
``cancel`` asks Gemini to cancel the batch; its takes become failed ("cancelled") and can be sent again.
"""
from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

from google.genai import types

from ragkit.errors import BatchError, GenerationError
from ragkit.jobs.resumable import FAILED, PENDING, JobRun, mark
from ragkit.messages import user_message
from ragkit.studio.batch import BatchJob, BatchRunner, JobStore, Take, _blocked_reference, batch_generator
from ragkit.studio.generation import read_answer
from ragkit.studio.references import load_references

INLINE_LIMIT = 20 * 2**20      # the Batch API takes inline requests up to 20 MB; beyond that, a file
POLL_S = 30.0                  # how often a waiting run asks Gemini how the batch is doing
HALF = 0.5
RUNNING_STATES = ("JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_QUEUED", "JOB_STATE_UNSPECIFIED")
SUCCEEDED = "JOB_STATE_SUCCEEDED"


def take_key(take: Take) -> str:
    return f"{take.product}:{take.variation}"


def _take_of(key: str) -> tuple[str, int]:
    product, _, variation = key.rpartition(":")
    return product, int(variation)


class HalfPriceRunner(BatchRunner):
    """The batch job's send step through the Batch API: submit once, then poll until the answers are in."""
    KIND = "half-price"
    SOURCE, RATE = "batch-half-price", HALF
    poll_s = POLL_S

    def _send(self, job: BatchJob, to_do: list, run: JobRun) -> None:
        with batch_generator(self.settings, time.sleep, self.backoff_s) as generator:
            if not job.remote_batch:
                job = self._submit(job, to_do, generator, run)
            while job.remote_batch and not run.stop_event.is_set():
                remote = generator.call_api(lambda client: client.batches.get(name=job.remote_batch), job.spec.model)
                state = _state(remote)
                if state == SUCCEEDED:
                    self._collect(job, remote, generator)
                    return
                if state not in RUNNING_STATES:
                    self._ended(job.id, f"The half-price batch {job.remote_batch} ended: {state.removeprefix('JOB_STATE_').lower()}")
                    return
                run.stop_event.wait(self.poll_s)  # a stop ends the wait; the batch goes on at Gemini's

    def _submit(self, job: BatchJob, to_do: list[Take], generator, run: JobRun) -> BatchJob:
        spec, requests, sent = job.spec, [], []
        for take in to_do:
            if blocked := _blocked_reference(self.library, spec.references_for(take.product)):
                self.store.update(job.id, lambda j, key=take.key, why=blocked: mark(j, key, {"status": FAILED,
                                                                                            "reason": why}))
                continue
            product = load_references(self.library, [take.product])
            others = [ref for ref in self.shared if ref.sha256 != take.product]
            requests.append([*product, *others])
            sent.append(take_key(take))
        if not requests or run.stop_event.is_set():
            return job
        lines = [{"key": key, "request": _rest_request(spec.prompt, refs, spec.aspect)}
                 for key, refs in zip(sent, requests)]
        size = sum(len(json.dumps(line)) for line in lines)
        if size < INLINE_LIMIT:
            source: Any = [_inline_request(spec.prompt, refs, spec.aspect, key) for key, refs in zip(sent, requests)]
        else:
            data = "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")
            uploaded = generator.call_api(lambda client: client.files.upload(
                file=io.BytesIO(data), config=types.UploadFileConfig(display_name=f"ragkit-{job.id}",
                                                                     mime_type="application/jsonl")), spec.model)
            source = uploaded.name
        remote = generator.call_api(lambda client: client.batches.create(
            model=spec.model, src=source, config=types.CreateBatchJobConfig(display_name=f"ragkit-{job.id}")),
            spec.model)
        return self.store.update(job.id, lambda j: setattr(j, "remote_batch", remote.name))

    def _collect(self, job: BatchJob, remote: Any, generator) -> None:
        """Every answer of the finished batch into its take, checked and priced like a direct one."""
        answers = _answers(remote, generator, job.spec.model)
        for key, response, error in answers:
            try:
                take = job.take(*_take_of(key))
            except (BatchError, ValueError):
                continue  # not one of ours (or renamed): nothing to record
            if take.status != PENDING:
                continue
            changes: dict[str, Any]
            if error is not None:
                changes = {"status": FAILED, "reason": f"Gemini could not answer it: {str(error.get('message', error))[:300]}"}
            else:
                try:
                    answer = read_answer(response, job.spec.model)
                    if not answer.images:
                        raise GenerationError("The answer has no image.")
                    changes = self.answered(job, take, job.spec.model, answer.images[0], answer.usage)
                except GenerationError as exc:
                    changes = {"status": FAILED, "reason": user_message(exc, self.settings)}
            self.store.update(job.id, lambda j, k=take.key, c=changes: mark(j, k, c))
        self._ended(job.id, "The half-price batch answered nothing for it")

    def _ended(self, job_id: str, reason: str) -> None:
        """The remote batch is over: takes still pending in it fail with `reason`; the job forgets it."""
        def end(job: BatchJob) -> None:
            for take in job.takes:
                if take.status == PENDING:
                    take.status, take.reason = FAILED, reason + "; --retry-failed sends it again."
            job.remote_batch = ""
        self.store.update(job_id, end)


def cancel(store: JobStore, job_id: str, library) -> BatchJob:
    """Ask Gemini to cancel the job's batch; its pending takes become failed (send them again with Retry)."""
    job = store.load(job_id)
    if not job.remote_batch:
        raise BatchError(f"Batch job {job_id} has no half-price batch waiting at Gemini.")
    with batch_generator(library.settings, time.sleep) as generator:
        generator.call_api(lambda client: client.batches.cancel(name=job.remote_batch), job.spec.model)

    def cancelled(j: BatchJob) -> None:
        for take in j.takes:
            if take.status == PENDING:
                take.status, take.reason = FAILED, "Cancelled; --retry-failed sends it again."
        j.remote_batch = ""
    return store.update(job_id, cancelled)


def _state(remote: Any) -> str:
    state = remote.state
    return str(getattr(state, "value", state) or "JOB_STATE_UNSPECIFIED")


def _rest_request(prompt: str, references: list, aspect: str | None) -> dict[str, Any]:
    """One GenerateContentRequest as REST JSON (camelCase, base64 images): a JSONL line's `request`."""
    parts: list[dict[str, Any]] = [{"text": prompt}]
    parts += [{"inlineData": {"mimeType": ref.mime, "data": base64.b64encode(ref.data).decode("ascii")}}
              for ref in references]
    config: dict[str, Any] = {"responseModalities": ["TEXT", "IMAGE"]}
    if aspect:
        config["imageConfig"] = {"aspectRatio": aspect}
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}


def _inline_request(prompt: str, references: list, aspect: str | None, key: str) -> types.InlinedRequest:
    """The same request for an inline batch, as the SDK's type (it writes the REST form itself)."""
    parts = [types.Part.from_text(text=prompt), *(types.Part.from_bytes(data=r.data, mime_type=r.mime)
                                                  for r in references)]
    config = types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"],
                                         image_config=types.ImageConfig(aspect_ratio=aspect) if aspect else None)
    return types.InlinedRequest(contents=[types.Content(role="user", parts=parts)], config=config,
                                metadata={"key": key})


def _answers(remote: Any, generator, model: str) -> list[tuple[str, Any, dict | None]]:
    """(key, GenerateContentResponse or None, error or None) for every answer of a finished batch."""
    dest = remote.dest
    if dest is not None and dest.inlined_responses:
        return [(str((item.metadata or {}).get("key", "")), item.response,
                 item.error.model_dump() if item.error is not None and hasattr(item.error, "model_dump") else item.error)
                for item in dest.inlined_responses]
    if dest is not None and dest.file_name:
        data = generator.call_api(lambda client: client.files.download(file=dest.file_name), model)
        out = []
        for line in data.decode("utf-8").splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            response = (types.GenerateContentResponse.model_validate_json(json.dumps(entry["response"]))
                        if entry.get("response") else None)
            out.append((str(entry.get("key", "")), response, entry.get("error")))
        return out
    return []
