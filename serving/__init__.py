"""Serving: gRPC completions for many tenants through Ray Serve to the engine.

    client --gRPC--> front server (serving.front: TLS, auth, validation, status codes,
                     health, reflection, per-tenant limits; runs in the `codetailor serve` process)
              --Serve handle--> Ingress deployment (serving.ingress: retrieval + prompt)
              --Serve handle, multiplexed id = tenant's adapter--> Model deployment
                     (serving.model: the engine)

Importing this package is cheap: nothing here imports Ray, vLLM or retrieval at
module level, so the model replica never loads bm25s/numba before its engine.
"""
