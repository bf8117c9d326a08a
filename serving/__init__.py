"""Serving: gRPC completions for many tenants through Ray Serve to the engine.

    client --gRPC--> front server (serving.front: TLS, auth, validation, status codes,
                     health, reflection, per-tenant limits), running inside each Ingress
                     replica and calling it directly
              --> Ingress deployment (serving.ingress: retrieval + prompt)
              --Serve handle, multiplexed id = tenant's adapter--> Model deployment
                     (serving.model: the engine)

A front server alone (`codetailor serve --attach`, the Helm chart's gateway sidecar) calls
the Ingress deployment through a Serve handle instead (serving.front `HandleIngress`).

Importing this package is cheap: nothing here imports Ray, vLLM or retrieval at
module level, so the model replica never loads bm25s/numba before its engine.
"""
