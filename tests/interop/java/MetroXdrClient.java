import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import javax.net.ssl.SSLContext;
import javax.xml.namespace.QName;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.soap.AttachmentPart;
import javax.xml.soap.MessageFactory;
import javax.xml.soap.SOAPBody;
import javax.xml.soap.SOAPBodyElement;
import javax.xml.soap.SOAPConstants;
import javax.xml.soap.SOAPElement;
import javax.xml.soap.SOAPException;
import javax.xml.soap.SOAPFault;
import javax.xml.soap.SOAPHeader;
import javax.xml.soap.SOAPMessage;
import javax.xml.ws.BindingProvider;
import javax.xml.ws.Dispatch;
import javax.xml.ws.Service;
import javax.xml.ws.WebServiceException;
import javax.xml.ws.handler.MessageContext;
import javax.xml.ws.soap.AddressingFeature;
import javax.xml.ws.soap.MTOMFeature;
import javax.xml.ws.soap.SOAPBinding;
import javax.xml.ws.soap.SOAPFaultException;

import org.w3c.dom.Element;
import org.w3c.dom.Node;

import com.sun.xml.ws.api.message.Header;
import com.sun.xml.ws.client.BindingProviderProperties;
import com.sun.xml.ws.developer.JAXWSProperties;

/**
 * IHE ITI-41 (Provide and Register Document Set-b) sender built on the Metro
 * JAX-WS RI: a Dispatch&lt;SOAPMessage&gt; over SOAP 1.2 with MTOM and
 * WS-Addressing, sent over mutual TLS.
 *
 * <pre>
 * java -cp CLASSPATH MetroXdrClient --url https://localhost:8443/xdr
 *      --submit-objects sor.xml --document Document01=doc.bin [--document ID=FILE ...]
 *      [--header direct-block.xml ...] --keystore client.p12 --keystore-password-file client.p12.pass
 *      --ca ca.pem [--message-id urn:uuid:...] [--action URI] [--timeout-seconds 30]
 * </pre>
 *
 * A peer for xdr-edge's interoperability tests (tests/test_interop_metro.py):
 * it sends what a Java health-IT product built on Metro sends, Metro's own
 * framing and addressing untouched. Each document is sent as an MTOM part
 * (application/octet-stream) referenced by xop:Include from xdsb:Document
 * id="ID". Each --header file holds one XML element that is added to the SOAP
 * header as is. --message-id puts our own wsa:MessageID in the message;
 * without it Metro generates "uuid:...". --action replaces the ITI-41 action
 * (Metro writes it as wsa:Action and in the MTOM start-info). The key store
 * password is read from a file (first line), never from the command line.
 * --timeout-seconds applies to connect and to reading the response.
 *
 * Prints one JSON object on one line to stdout describing the outcome.
 * Exit status: 0 = a SOAP response (normal or fault) came back, 1 = bad
 * arguments or input files, 2 = transport failure (TLS, connect, non-SOAP
 * HTTP answer, timeout).
 */
public final class MetroXdrClient {

    static final String XDSB_NS = "urn:ihe:iti:xds-b:2007";
    static final String RS_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0";
    static final String XOP_NS = "http://www.w3.org/2004/08/xop/include";
    static final String WSA_NS = "http://www.w3.org/2005/08/addressing";
    static final String ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b";

    /** Command-line options. */
    static final class Options {
        String url;
        Path submitObjects;
        final Map<String, Path> documents = new LinkedHashMap<>();
        final List<Path> headers = new ArrayList<>();
        Path keystore;
        Path keystorePasswordFile;
        Path ca;
        String messageId;
        String action = ACTION;
        int timeoutSeconds = 30;

        static Options parse(String[] args) {
            Options o = new Options();
            for (int i = 0; i < args.length; i++) {
                String name = args[i];
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException("missing value for " + name);
                }
                String value = args[++i];
                switch (name) {
                    case "--url": o.url = value; break;
                    case "--submit-objects": o.submitObjects = Path.of(value); break;
                    case "--document": {
                        int eq = value.indexOf('=');
                        if (eq <= 0) {
                            throw new IllegalArgumentException("--document expects ID=FILE");
                        }
                        o.documents.put(value.substring(0, eq), Path.of(value.substring(eq + 1)));
                        break;
                    }
                    case "--header": o.headers.add(Path.of(value)); break;
                    case "--keystore": o.keystore = Path.of(value); break;
                    case "--keystore-password-file": o.keystorePasswordFile = Path.of(value); break;
                    case "--ca": o.ca = Path.of(value); break;
                    case "--message-id": o.messageId = value; break;
                    case "--action": o.action = value; break;
                    case "--timeout-seconds": o.timeoutSeconds = Integer.parseInt(value); break;
                    default: throw new IllegalArgumentException("unknown option " + name);
                }
            }
            if (o.url == null || o.submitObjects == null || o.documents.isEmpty()
                    || o.keystore == null || o.keystorePasswordFile == null || o.ca == null) {
                throw new IllegalArgumentException("required: --url --submit-objects --document"
                        + " --keystore --keystore-password-file --ca");
            }
            return o;
        }
    }

    public static void main(String[] args) {
        Options opts;
        SOAPMessage request;
        SSLContext tls;
        try {
            opts = Options.parse(args);
            request = buildRequest(opts);
            tls = PeerTls.context(opts.keystore, opts.keystorePasswordFile, opts.ca);
        } catch (IllegalArgumentException | IOException | SOAPException | GeneralSecurityException
                | org.xml.sax.SAXException | javax.xml.parsers.ParserConfigurationException e) {
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("outcome", "usage-error");
            out.put("error", e.toString());
            System.out.println(Json.object(out));
            System.exit(1);
            return;
        }

        Dispatch<SOAPMessage> dispatch = createDispatch(opts, tls);
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("request_message_id", opts.messageId);
        int exit;
        try {
            SOAPMessage response = dispatch.invoke(request);
            out.put("outcome", "response");
            describeBody(response.getSOAPBody(), out);
            exit = 0;
        } catch (SOAPFaultException e) {
            out.put("outcome", "fault");
            describeFault(e.getFault(), out);
            exit = 0;
        } catch (WebServiceException e) {
            out.put("outcome", "transport-error");
            out.put("error", causeChain(e));
            exit = 2;
        } catch (SOAPException e) {
            out.put("outcome", "bad-response");
            out.put("error", causeChain(e));
            exit = 2;
        }
        Map<String, Object> responseContext = dispatch.getResponseContext();
        if (exit == 0) {
            describeAddressing(responseContext, out);
        }
        Object status = responseContext.get(MessageContext.HTTP_RESPONSE_CODE);
        out.put("http_status", status instanceof Integer && (Integer) status > 0 ? status : null);
        out.put("response_content_type", responseContentType(responseContext));
        System.out.println(Json.object(out));
        System.exit(exit);
    }

    /**
     * A Dispatch bound to SOAP 1.2 + MTOM with WS-Addressing on. Metro takes
     * wsa:Action from the SOAPAction properties and adds wsa:To (the endpoint
     * address), wsa:ReplyTo and wsa:FaultTo (anonymous) and, unless the message
     * already carries one, wsa:MessageID ("uuid:..." form).
     */
    static Dispatch<SOAPMessage> createDispatch(Options opts, SSLContext tls) {
        QName serviceName = new QName(XDSB_NS, "DocumentRepository_Service");
        QName portName = new QName(XDSB_NS, "DocumentRepository_Port_Soap12");
        Service service = Service.create(serviceName);
        service.addPort(portName, SOAPBinding.SOAP12HTTP_MTOM_BINDING, opts.url);
        Dispatch<SOAPMessage> dispatch = service.createDispatch(portName, SOAPMessage.class,
                Service.Mode.MESSAGE, new MTOMFeature(true), new AddressingFeature(true, true));

        Map<String, Object> rc = dispatch.getRequestContext();
        rc.put(BindingProvider.SOAPACTION_USE_PROPERTY, Boolean.TRUE);
        rc.put(BindingProvider.SOAPACTION_URI_PROPERTY, opts.action);
        rc.put(JAXWSProperties.SSL_SOCKET_FACTORY, tls.getSocketFactory());
        rc.put(BindingProviderProperties.CONNECT_TIMEOUT, opts.timeoutSeconds * 1000);
        rc.put(BindingProviderProperties.REQUEST_TIMEOUT, opts.timeoutSeconds * 1000);
        return dispatch;
    }

    /**
     * Builds the SOAP 1.2 envelope. Each document becomes a SAAJ AttachmentPart
     * referenced from xdsb:Document by xop:Include; Metro's MTOM codec writes
     * the envelope as the application/xop+xml root part and each attachment
     * as a following MIME part.
     */
    static SOAPMessage buildRequest(Options opts) throws IOException, SOAPException,
            org.xml.sax.SAXException, javax.xml.parsers.ParserConfigurationException {
        SOAPMessage msg = MessageFactory.newInstance(SOAPConstants.SOAP_1_2_PROTOCOL).createMessage();

        SOAPHeader header = msg.getSOAPHeader();
        if (opts.messageId != null) {
            header.addHeaderElement(new QName(WSA_NS, "MessageID", "wsa")).addTextNode(opts.messageId);
        }
        for (Path file : opts.headers) {
            header.appendChild(header.getOwnerDocument().importNode(parseXml(file), true));
        }

        SOAPBody body = msg.getSOAPBody();
        SOAPBodyElement pnr = body.addBodyElement(
                new QName(XDSB_NS, "ProvideAndRegisterDocumentSetRequest", "xdsb"));
        pnr.appendChild(body.getOwnerDocument().importNode(parseXml(opts.submitObjects), true));

        int n = 0;
        for (Map.Entry<String, Path> doc : opts.documents.entrySet()) {
            String contentId = "doc" + (++n) + "." + UUID.randomUUID() + "@xdr-edge.test";
            AttachmentPart part = msg.createAttachmentPart();
            byte[] bytes = Files.readAllBytes(doc.getValue());
            part.setRawContentBytes(bytes, 0, bytes.length, "application/octet-stream");
            part.setContentId("<" + contentId + ">");
            msg.addAttachmentPart(part);

            SOAPElement document = pnr.addChildElement("Document", "xdsb", XDSB_NS);
            document.setAttribute("id", doc.getKey());
            document.addChildElement("Include", "xop", XOP_NS).setAttribute("href", "cid:" + contentId);
        }
        return msg;
    }

    static Element parseXml(Path file) throws IOException, org.xml.sax.SAXException,
            javax.xml.parsers.ParserConfigurationException {
        DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
        f.setNamespaceAware(true);
        f.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
        try (InputStream in = Files.newInputStream(file)) {
            return f.newDocumentBuilder().parse(in).getDocumentElement();
        }
    }

    static void describeBody(SOAPBody body, Map<String, Object> out) {
        out.put("body_element", firstChildElementName(body));
        Element rr = firstElement(body, RS_NS, "RegistryResponse");
        out.put("registry_status", rr == null ? null : rr.getAttribute("status"));
    }

    /**
     * Even in MESSAGE mode Metro turns a SOAP fault response into a
     * SOAPFaultException (ServerSOAPFaultException) instead of returning it.
     */
    static void describeFault(SOAPFault fault, Map<String, Object> out) {
        out.put("fault_code", fault.getFaultCodeAsQName().toString());
        List<String> subcodes = new ArrayList<>();
        for (Iterator<?> it = fault.getFaultSubcodes(); it.hasNext(); ) {
            subcodes.add(it.next().toString());
        }
        out.put("fault_subcodes", subcodes);
        out.put("fault_reason", fault.getFaultString());
    }

    /**
     * WS-Addressing headers of the response, taken from the inbound header
     * list Metro leaves in the response context; unlike the SOAPMessage this
     * is also available when the response was a fault.
     */
    static void describeAddressing(Map<String, Object> responseContext, Map<String, Object> out) {
        Map<String, String> wsa = new LinkedHashMap<>();
        Object headers = responseContext.get(JAXWSProperties.INBOUND_HEADER_LIST_PROPERTY);
        if (headers instanceof Iterable) {
            for (Object o : (Iterable<?>) headers) {
                Header h = (Header) o;
                if (WSA_NS.equals(h.getNamespaceURI())) {
                    wsa.putIfAbsent(h.getLocalPart(), h.getStringContent().trim());
                }
            }
        }
        out.put("action", wsa.get("Action"));
        out.put("relates_to", wsa.get("RelatesTo"));
        out.put("response_message_id", wsa.get("MessageID"));
    }

    static Element firstElement(Element parent, String ns, String localName) {
        org.w3c.dom.NodeList list = parent.getElementsByTagNameNS(ns, localName);
        return list.getLength() == 0 ? null : (Element) list.item(0);
    }

    static String firstChildElementName(Element parent) {
        for (Node n = parent.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n.getNodeType() == Node.ELEMENT_NODE) {
                return new QName(n.getNamespaceURI(), n.getLocalName()).toString();
            }
        }
        return null;
    }

    static String responseContentType(Map<String, Object> responseContext) {
        Object headers = responseContext.get(MessageContext.HTTP_RESPONSE_HEADERS);
        if (!(headers instanceof Map)) {
            return null;
        }
        for (Map.Entry<?, ?> e : ((Map<?, ?>) headers).entrySet()) {
            if (e.getKey() != null && "content-type".equalsIgnoreCase(e.getKey().toString())
                    && e.getValue() instanceof List && !((List<?>) e.getValue()).isEmpty()) {
                return ((List<?>) e.getValue()).get(0).toString();
            }
        }
        return null;
    }

    static String causeChain(Throwable t) {
        StringBuilder sb = new StringBuilder(t.toString());
        for (Throwable c = t.getCause(); c != null; c = c.getCause()) {
            sb.append(" <- ").append(c);
        }
        return sb.toString();
    }

    /** Minimal JSON writer for flat objects of strings, numbers, nulls and string lists. */
    static final class Json {
        static String object(Map<String, Object> map) {
            StringBuilder sb = new StringBuilder("{");
            for (Map.Entry<String, Object> e : map.entrySet()) {
                if (sb.length() > 1) {
                    sb.append(',');
                }
                sb.append(string(e.getKey())).append(':').append(value(e.getValue()));
            }
            return sb.append('}').toString();
        }

        static String value(Object v) {
            if (v == null) {
                return "null";
            }
            if (v instanceof Number) {
                return v.toString();
            }
            if (v instanceof List) {
                StringBuilder sb = new StringBuilder("[");
                for (Object item : (List<?>) v) {
                    if (sb.length() > 1) {
                        sb.append(',');
                    }
                    sb.append(value(item));
                }
                return sb.append(']').toString();
            }
            return string(v.toString());
        }

        static String string(String s) {
            StringBuilder sb = new StringBuilder("\"");
            for (char c : s.toCharArray()) {
                switch (c) {
                    case '"': sb.append("\\\""); break;
                    case '\\': sb.append("\\\\"); break;
                    case '\n': sb.append("\\n"); break;
                    case '\r': sb.append("\\r"); break;
                    case '\t': sb.append("\\t"); break;
                    default:
                        if (c < 0x20) {
                            sb.append(String.format("\\u%04x", (int) c));
                        } else {
                            sb.append(c);
                        }
                }
            }
            return sb.append('"').toString();
        }
    }
}
