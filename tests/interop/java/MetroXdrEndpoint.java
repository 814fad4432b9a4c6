import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Base64;
import java.util.HexFormat;
import java.util.UUID;
import java.util.concurrent.Executors;

import javax.net.ssl.SSLParameters;
import javax.xml.namespace.QName;
import javax.xml.soap.MessageFactory;
import javax.xml.soap.SOAPConstants;
import javax.xml.soap.SOAPException;
import javax.xml.soap.SOAPHeader;
import javax.xml.soap.SOAPHeaderElement;
import javax.xml.soap.SOAPMessage;
import javax.xml.ws.BindingType;
import javax.xml.ws.Endpoint;
import javax.xml.ws.Provider;
import javax.xml.ws.Service;
import javax.xml.ws.ServiceMode;
import javax.xml.ws.WebServiceException;
import javax.xml.ws.WebServiceProvider;
import javax.xml.ws.soap.Addressing;
import javax.xml.ws.soap.SOAPBinding;

import org.w3c.dom.Element;
import org.w3c.dom.Node;
import org.w3c.dom.NodeList;

import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsParameters;
import com.sun.net.httpserver.HttpsServer;

/**
 * IHE ITI-41 (Provide and Register Document Set-b) receiver built on the Metro
 * JAX-WS RI: a SOAP 1.2 + MTOM Provider&lt;SOAPMessage&gt; with WS-Addressing,
 * published on a JDK HttpsServer that requires a client certificate.
 *
 * <pre>
 * java -cp CLASSPATH MetroXdrEndpoint --port 0 --keystore server.p12
 *      --keystore-password-file server.p12.pass --ca ca.pem [--path /xdr]
 * </pre>
 *
 * A peer for xdr-edge's interoperability tests (tests/test_interop_metro.py):
 * the receiving side of a Java product built on Metro. Binds 127.0.0.1 only.
 * The key store password is read from a file (first line).
 *
 * stdout (one line each, flushed; a request's lines in one write):
 * <pre>
 * READY port=NNNN path=/xdr
 * REQUEST message_id=... action=... direct_block=yes|no documents=N attachments=N
 *                                          ("-" for a missing wsa header)
 * DOCUMENT id=... sha1=HEX size=BYTES               (one per xdsb:Document)
 * </pre>
 * Every request that passes Metro's checks (WS-Addressing required, MTOM or
 * plain SOAP 1.2) is answered with a RegistryResponse of status Success
 * carrying wsa:Action, wsa:MessageID and wsa:RelatesTo.
 */
@WebServiceProvider(serviceName = "DocumentRepository_Service",
        portName = "DocumentRepository_Port_Soap12",
        targetNamespace = MetroXdrEndpoint.XDSB_NS)
@ServiceMode(Service.Mode.MESSAGE)
@BindingType(SOAPBinding.SOAP12HTTP_MTOM_BINDING)
@Addressing(enabled = true, required = true)
public final class MetroXdrEndpoint implements Provider<SOAPMessage> {

    static final String XDSB_NS = "urn:ihe:iti:xds-b:2007";
    static final String RS_NS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0";
    static final String WSA_NS = "http://www.w3.org/2005/08/addressing";
    static final String RESPONSE_ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse";
    static final String SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success";
    static final String DIRECT_NS = "urn:direct:addressing";

    /**
     * Metro decodes MTOM before the Provider sees the message: each xop:Include
     * is replaced by the MIME part re-encoded as base64 text inside
     * xdsb:Document. (The parts also remain as AttachmentParts, but with the
     * xop:Include gone nothing links them to a document any more.) So every
     * document is read back from the element text.
     */
    @Override
    public SOAPMessage invoke(SOAPMessage request) {
        try {
            SOAPHeader header = request.getSOAPHeader();
            String messageId = wsaHeader(header, "MessageID");
            boolean direct = header != null && firstChild(header, DIRECT_NS, "addressBlock") != null;
            NodeList docs = request.getSOAPBody().getElementsByTagNameNS(XDSB_NS, "Document");

            StringBuilder report = new StringBuilder()
                    .append("REQUEST message_id=").append(orDash(messageId))
                    .append(" action=").append(orDash(wsaHeader(header, "Action")))
                    .append(" direct_block=").append(direct ? "yes" : "no")
                    .append(" documents=").append(docs.getLength())
                    .append(" attachments=").append(request.countAttachments()).append('\n');
            for (int i = 0; i < docs.getLength(); i++) {
                Element doc = (Element) docs.item(i);
                byte[] bytes = Base64.getMimeDecoder().decode(doc.getTextContent().trim());
                report.append("DOCUMENT id=").append(doc.getAttribute("id"))
                        .append(" sha1=").append(sha1Hex(bytes))
                        .append(" size=").append(bytes.length).append('\n');
            }
            System.out.print(report);
            System.out.flush();
            return registryResponse(messageId);
        } catch (SOAPException e) {
            throw new WebServiceException(e);
        }
    }

    static String orDash(String s) {
        return s == null ? "-" : s;
    }

    static Element firstChild(Element parent, String ns, String localName) {
        for (Node n = parent.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n.getNodeType() == Node.ELEMENT_NODE && ns.equals(n.getNamespaceURI())
                    && localName.equals(n.getLocalName())) {
                return (Element) n;
            }
        }
        return null;
    }

    static String wsaHeader(SOAPHeader header, String localName) {
        Element e = header == null ? null : firstChild(header, WSA_NS, localName);
        return e == null ? null : e.getTextContent().trim();
    }

    static String sha1Hex(byte[] bytes) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-1").digest(bytes));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * Metro only fills in response addressing headers when it can resolve an
     * output action from a WSDL operation; a WSDL-less Provider gets none
     * ("WSA headers are not added as value for wsa:Action cannot be resolved"),
     * so they are written here and Metro sends them unchanged.
     */
    static SOAPMessage registryResponse(String relatesTo) throws SOAPException {
        SOAPMessage response = MessageFactory.newInstance(SOAPConstants.SOAP_1_2_PROTOCOL).createMessage();
        SOAPHeader header = response.getSOAPHeader();
        SOAPHeaderElement action = header.addHeaderElement(new QName(WSA_NS, "Action", "wsa"));
        action.setMustUnderstand(true);
        action.addTextNode(RESPONSE_ACTION);
        header.addHeaderElement(new QName(WSA_NS, "MessageID", "wsa")).addTextNode("urn:uuid:" + UUID.randomUUID());
        if (relatesTo != null) {
            header.addHeaderElement(new QName(WSA_NS, "RelatesTo", "wsa")).addTextNode(relatesTo);
        }
        response.getSOAPBody()
                .addBodyElement(new QName(RS_NS, "RegistryResponse", "rs"))
                .setAttribute("status", SUCCESS);
        return response;
    }

    public static void main(String[] args) throws Exception {
        int port = -1;
        String path = "/xdr";
        Path keystore = null;
        Path passwordFile = null;
        Path ca = null;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--port": port = Integer.parseInt(args[i + 1]); break;
                case "--path": path = args[i + 1]; break;
                case "--keystore": keystore = Path.of(args[i + 1]); break;
                case "--keystore-password-file": passwordFile = Path.of(args[i + 1]); break;
                case "--ca": ca = Path.of(args[i + 1]); break;
                default: throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        if (args.length % 2 != 0 || port < 0 || keystore == null || passwordFile == null || ca == null) {
            System.err.println("usage: MetroXdrEndpoint --port N (0 = any) --keystore server.p12"
                    + " --keystore-password-file FILE --ca ca.pem [--path /xdr]");
            System.exit(1);
        }

        HttpsServer server = HttpsServer.create(new InetSocketAddress("127.0.0.1", port), 0);
        server.setHttpsConfigurator(new HttpsConfigurator(PeerTls.context(keystore, passwordFile, ca)) {
            @Override
            public void configure(HttpsParameters params) {
                SSLParameters ssl = getSSLContext().getDefaultSSLParameters();
                ssl.setNeedClientAuth(true);
                params.setSSLParameters(ssl);
            }
        });
        server.setExecutor(Executors.newFixedThreadPool(4));

        Endpoint endpoint = Endpoint.create(new MetroXdrEndpoint());
        endpoint.publish(server.createContext(path));
        server.start();
        System.out.println("READY port=" + server.getAddress().getPort() + " path=" + path);
    }
}
