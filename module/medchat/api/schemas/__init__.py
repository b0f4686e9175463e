"""Every schema of the API in one package: what a request may send and what it is answered.

- base.py: the base classes and field types the request models share;
- requests.py: one pydantic model per JSON request body (read_json parses with it);
- queries.py: one pydantic model per set of query parameters (read_query parses with it);
- responses.py: the JSON Schemas of the answers (the schemathesis test checks live answers).

Routes (api/http.py `route()`) name a body model, a query model and response schemas; the OpenAPI
document (api/openapi.py) is made from the routes, so it describes exactly what is validated.
"""
