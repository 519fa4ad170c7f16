"""`medkd serve`: a FastAPI app over a predictor: POST /predict, GET /health, and a one-page web front end."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
from pathlib import Path

from fastapi import Depends, FastAPI, File, Header, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from medkd import __version__
from medkd.data import BadImageError, NotAnImageError, TooManyPixelsError, decode_bytes
from medkd.deploy.config import ServeConfig
from medkd.deploy.predict import distribution_check, heatmap_overlays, predict_decoded
from medkd.deploy.runtime import Predictor

PAGE = Path(__file__).with_name("page.html")
MULTIPART_OVERHEAD = 16_384  # form boundaries and headers around the file, allowed above max_upload_bytes


def create_app(predictor: Predictor, settings: ServeConfig = ServeConfig()) -> FastAPI:
    """The service for one model. Requests share the model one at a time (Grad-CAM hooks are not thread-safe).

    GET / is the web page, GET /health the model's id, engine, classes and threshold, and POST /predict takes one
    image or DICOM file (multipart field `file`; `heatmap=true` asks for a Grad-CAM overlay) and answers its
    probabilities, label, distribution check and latency (ms) as JSON, the overlay as base64 PNG. Over a limit
    the answer is 401 (token), 413 (upload size or pixels), 415 (not an image), 422 (unreadable) or 504 (time).

    Parameters
    ----------
    predictor : Predictor
        The model (`load_predictor`).
    settings : ServeConfig
        The service's limits, token and whether heatmaps are offered.

    Returns
    -------
    FastAPI
    """
    app = FastAPI(title="medkd", version=__version__, summary=f"{predictor.card['model_id']} ({predictor.engine})")
    model_lock = threading.Lock()

    @app.middleware("http")
    async def refuse_large_bodies(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_upload_bytes + MULTIPART_OVERHEAD:
            return JSONResponse({"detail": f"upload of {int(length):,} bytes is over the limit of "
                                           f"{settings.max_upload_bytes:,} bytes"}, status_code=413)
        return await call_next(request)

    def require_token(authorization: str | None = Header(None)) -> None:
        if settings.token is not None and authorization != f"Bearer {settings.token}":
            raise HTTPException(401, "missing or wrong API token: send the header 'Authorization: Bearer <token>'")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE.read_text()

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model_id": predictor.card["model_id"], "engine": predictor.engine,
                "classes": predictor.classes, "threshold": predictor.threshold, "medkd_version": __version__,
                "token_required": settings.token is not None,
                "heatmap": settings.heatmap and predictor.has_heatmaps,
                "max_upload_bytes": settings.max_upload_bytes}

    def run_model(data: bytes, name: str, heatmap: bool) -> dict:
        decoded = decode_bytes(data, name, max_pixels=settings.max_pixels, image_key=predictor.hdf5_image_key)
        with model_lock:
            started = time.perf_counter()
            images, probabilities, scores = predict_decoded(predictor, [decoded])
            latency = (time.perf_counter() - started) * 1000
            overlay = heatmap_overlays(predictor, [decoded], images, probabilities)[0] if heatmap else None
        result = {"file": name, "probabilities": dict(zip(predictor.classes, map(float, probabilities[0]))),
                  "label": predictor.labels(probabilities)[0], "threshold": predictor.threshold,
                  "model_id": predictor.card["model_id"], "medkd_version": __version__, "engine": predictor.engine,
                  "latency_ms": round(latency, 2), "heatmap_png": None, "note": decoded.note}
        score = float(scores[0]) if scores is not None else None
        in_distribution, reason = distribution_check(predictor, decoded, images[0], score)
        result.update(in_distribution=in_distribution, ood_score=score, ood_threshold=predictor.guard_threshold,
                      ood_reason=reason)
        if overlay is not None:
            buffer = io.BytesIO()
            overlay.save(buffer, format="PNG")
            result["heatmap_png"] = base64.b64encode(buffer.getvalue()).decode("ascii")
        return result

    @app.post("/predict", dependencies=[Depends(require_token)])
    async def predict(file: UploadFile = File(..., description="an image (JPEG, PNG, BMP, TIFF) or DICOM file"),
                      heatmap: bool = False) -> dict:
        data = await file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, f"upload is over the limit of {settings.max_upload_bytes:,} bytes")
        want_heatmap = heatmap and settings.heatmap and predictor.has_heatmaps
        try:
            return await asyncio.wait_for(run_in_threadpool(run_model, data, file.filename or "upload", want_heatmap),
                                          timeout=settings.timeout_seconds)
        except NotAnImageError as err:
            raise HTTPException(415, f"{err.problem}: {err.advice}") from None
        except TooManyPixelsError as err:
            raise HTTPException(413, f"{err.problem}") from None
        except BadImageError as err:
            raise HTTPException(422, f"{err.problem}: {err.advice}") from None
        except TimeoutError:
            raise HTTPException(504, f"prediction took longer than {settings.timeout_seconds} s") from None

    return app


def serve(predictor: Predictor, settings: ServeConfig) -> None:
    """Run the app with uvicorn until interrupted.

    Parameters
    ----------
    predictor : Predictor
        The model (`load_predictor`).
    settings : ServeConfig
        Host and port, and the app's limits (see `create_app`).
    """
    import uvicorn

    uvicorn.run(create_app(predictor, settings), host=settings.host, port=settings.port, log_level="info",
                timeout_keep_alive=5)
