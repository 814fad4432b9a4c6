"""Our ITI-41 WSDL and XSDs (written from ITI TF-2b 3.41 and the ebRS 3.0 schemas), shipped in the wheel as the
package ``xdr_edge.wsdl`` and read with :mod:`importlib.resources`; zeep loads them offline."""
