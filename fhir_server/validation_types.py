"""FHIR R4 (4.0.1) definitions that the fhir.resources R4B models cannot supply.

Generated data (by a one-off script kept outside this repository). Source: the official
FHIR R4 4.0.1 StructureDefinitions and ValueSets (as packaged in the npm package fhir@4.12.0,
profiles/types.json + profiles/valuesets.json), cross-checked against
fhir.resources 6.1.0, the last release of that library generated from R4 4.0.1.

- R4_RESOURCE_TYPES_TEXT: every concrete R4 resource type (space separated).
- VALUE_SETS: the codes of every enumerable value set that R4 binds with strength
  "required" to a code / Coding / CodeableConcept element: name -> ((system, codes), ...).
  (mimetypes, currencies, ucum-units and LOINC LL379-9 are not enumerable and absent; the
  value sets that pick a few concepts of a larger code system, which that package expands
  whole, are cut to their R4 concept lists.)
- MODEL_BINDINGS: "<R4B model class>.<element>" -> VALUE_SETS name, i.e. the R4
  required bindings of the elements that are validated through an R4B model.
- TABLE_TYPES: element tables for the R4 types whose R4B model is missing or has a
  different structure (the R4-only resources, Evidence, EvidenceVariable and the
  SubstanceAmount datatype): path -> {element: (type, is_list, required, choice, value_set)}.
  `type` is a primitive type code, a datatype name, "Resource", or the path of a backbone
  element in this table; for a choice member `required` means the choice is required.
"""

from __future__ import annotations

R4_RESOURCE_TYPES_TEXT: str = (
    "Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment "
    "AppointmentResponse AuditEvent Basic Binary BiologicallyDerivedProduct "
    "BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry "
    "ChargeItem ChargeItemDefinition Claim ClaimResponse ClinicalImpression "
    "CodeSystem Communication CommunicationRequest CompartmentDefinition "
    "Composition ConceptMap Condition Consent Contract Coverage "
    "CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device "
    "DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement "
    "DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis "
    "Encounter Endpoint EnrollmentRequest EnrollmentResponse EpisodeOfCare "
    "EventDefinition Evidence EvidenceVariable ExampleScenario "
    "ExplanationOfBenefit FamilyMemberHistory Flag Goal GraphDefinition Group "
    "GuidanceResponse HealthcareService ImagingStudy Immunization "
    "ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide "
    "InsurancePlan Invoice Library Linkage List Location Measure MeasureReport "
    "Media Medication MedicationAdministration MedicationDispense "
    "MedicationKnowledge MedicationRequest MedicationStatement MedicinalProduct "
    "MedicinalProductAuthorization MedicinalProductContraindication "
    "MedicinalProductIndication MedicinalProductIngredient "
    "MedicinalProductInteraction MedicinalProductManufactured "
    "MedicinalProductPackaged MedicinalProductPharmaceutical "
    "MedicinalProductUndesirableEffect MessageDefinition MessageHeader "
    "MolecularSequence NamingSystem NutritionOrder Observation "
    "ObservationDefinition OperationDefinition OperationOutcome Organization "
    "OrganizationAffiliation Parameters Patient PaymentNotice "
    "PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole "
    "Procedure Provenance Questionnaire QuestionnaireResponse RelatedPerson "
    "RequestGroup ResearchDefinition ResearchElementDefinition ResearchStudy "
    "ResearchSubject RiskAssessment RiskEvidenceSynthesis Schedule "
    "SearchParameter ServiceRequest Slot Specimen SpecimenDefinition "
    "StructureDefinition StructureMap Subscription Substance SubstanceNucleicAcid "
    "SubstancePolymer SubstanceProtein SubstanceReferenceInformation "
    "SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest "
    "Task TerminologyCapabilities TestReport TestScript ValueSet "
    "VerificationResult VisionPrescription"
)

VALUE_SETS: dict[str, tuple[tuple[str, str], ...]] = {
    "FHIR-version": (
        (
            "http://hl7.org/fhir/FHIR-version",
            (
                "0.0.80 0.0.81 0.0.82 0.01 0.05 0.06 0.11 0.4.0 0.5.0 1.0.0 1.0.1 1.0.2 1.1.0 "
                "1.4.0 1.6.0 1.8.0 3.0.0 3.0.1 3.3.0 3.5.0 4.0.0 4.0.1"
            ),
        ),
    ),
    "account-status": (("http://hl7.org/fhir/account-status", "active entered-in-error inactive on-hold unknown"),),
    "action-cardinality-behavior": (("http://hl7.org/fhir/action-cardinality-behavior", "multiple single"),),
    "action-condition-kind": (("http://hl7.org/fhir/action-condition-kind", "applicability start stop"),),
    "action-grouping-behavior": (
        ("http://hl7.org/fhir/action-grouping-behavior", "logical-group sentence-group visual-group"),
    ),
    "action-participant-type": (
        ("http://hl7.org/fhir/action-participant-type", "device patient practitioner related-person"),
    ),
    "action-precheck-behavior": (("http://hl7.org/fhir/action-precheck-behavior", "no yes"),),
    "action-relationship-type": (
        (
            "http://hl7.org/fhir/action-relationship-type",
            (
                "after after-end after-start before before-end before-start concurrent "
                "concurrent-with-end concurrent-with-start"
            ),
        ),
    ),
    "action-required-behavior": (
        ("http://hl7.org/fhir/action-required-behavior", "could must must-unless-documented"),
    ),
    "action-selection-behavior": (
        ("http://hl7.org/fhir/action-selection-behavior", "all all-or-none any at-most-one exactly-one one-or-more"),
    ),
    "address-type": (("http://hl7.org/fhir/address-type", "both physical postal"),),
    "address-use": (("http://hl7.org/fhir/address-use", "billing home old temp work"),),
    "administrative-gender": (("http://hl7.org/fhir/administrative-gender", "female male other unknown"),),
    "adverse-event-actuality": (("http://hl7.org/fhir/adverse-event-actuality", "actual potential"),),
    "adverse-event-outcome": (
        (
            "http://terminology.hl7.org/CodeSystem/adverse-event-outcome",
            "fatal ongoing recovering resolved resolvedWithSequelae unknown",
        ),
    ),
    "adverse-event-severity": (
        ("http://terminology.hl7.org/CodeSystem/adverse-event-severity", "mild moderate severe"),
    ),
    "all-types": (
        (
            "http://hl7.org/fhir/data-types",
            (
                "Address Age Annotation Attachment BackboneElement CodeableConcept Coding "
                "ContactDetail ContactPoint Contributor Count DataRequirement Distance Dosage "
                "Duration Element ElementDefinition Expression Extension HumanName Identifier "
                "MarketingStatus Meta Money MoneyQuantity Narrative ParameterDefinition "
                "Period Population ProdCharacteristic ProductShelfLife Quantity Range Ratio "
                "Reference RelatedArtifact SampledData Signature SimpleQuantity "
                "SubstanceAmount Timing TriggerDefinition UsageContext base64Binary boolean "
                "canonical code date dateTime decimal id instant integer markdown oid "
                "positiveInt string time unsignedInt uri url uuid xhtml"
            ),
        ),
        (
            "http://hl7.org/fhir/resource-types",
            (
                "Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment "
                "AppointmentResponse AuditEvent Basic Binary BiologicallyDerivedProduct "
                "BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry "
                "ChargeItem ChargeItemDefinition Claim ClaimResponse ClinicalImpression "
                "CodeSystem Communication CommunicationRequest CompartmentDefinition "
                "Composition ConceptMap Condition Consent Contract Coverage "
                "CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device "
                "DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement "
                "DiagnosticReport DocumentManifest DocumentReference DomainResource "
                "EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest "
                "EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable "
                "ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal "
                "GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy "
                "Immunization ImmunizationEvaluation ImmunizationRecommendation "
                "ImplementationGuide InsurancePlan Invoice Library Linkage List Location "
                "Measure MeasureReport Media Medication MedicationAdministration "
                "MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement "
                "MedicinalProduct MedicinalProductAuthorization "
                "MedicinalProductContraindication MedicinalProductIndication "
                "MedicinalProductIngredient MedicinalProductInteraction "
                "MedicinalProductManufactured MedicinalProductPackaged "
                "MedicinalProductPharmaceutical MedicinalProductUndesirableEffect "
                "MessageDefinition MessageHeader MolecularSequence NamingSystem "
                "NutritionOrder Observation ObservationDefinition OperationDefinition "
                "OperationOutcome Organization OrganizationAffiliation Parameters Patient "
                "PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner "
                "PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse "
                "RelatedPerson RequestGroup ResearchDefinition ResearchElementDefinition "
                "ResearchStudy ResearchSubject Resource RiskAssessment RiskEvidenceSynthesis "
                "Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition "
                "StructureDefinition StructureMap Subscription Substance SubstanceNucleicAcid "
                "SubstancePolymer SubstanceProtein SubstanceReferenceInformation "
                "SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest "
                "Task TerminologyCapabilities TestReport TestScript ValueSet "
                "VerificationResult VisionPrescription"
            ),
        ),
        ("http://hl7.org/fhir/abstract-types", "Any Type"),
    ),
    "allergy-intolerance-category": (
        ("http://hl7.org/fhir/allergy-intolerance-category", "biologic environment food medication"),
    ),
    "allergy-intolerance-criticality": (
        ("http://hl7.org/fhir/allergy-intolerance-criticality", "high low unable-to-assess"),
    ),
    "allergy-intolerance-type": (("http://hl7.org/fhir/allergy-intolerance-type", "allergy intolerance"),),
    "allergyintolerance-clinical": (
        ("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active inactive resolved"),
    ),
    "allergyintolerance-verification": (
        (
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
            "confirmed entered-in-error refuted unconfirmed",
        ),
    ),
    "appointmentstatus": (
        (
            "http://hl7.org/fhir/appointmentstatus",
            ("arrived booked cancelled checked-in entered-in-error fulfilled noshow pending proposed waitlist"),
        ),
    ),
    "assert-direction-codes": (("http://hl7.org/fhir/assert-direction-codes", "request response"),),
    "assert-operator-codes": (
        (
            "http://hl7.org/fhir/assert-operator-codes",
            ("contains empty equals eval greaterThan in lessThan notContains notEmpty notEquals notIn"),
        ),
    ),
    "assert-response-code-types": (
        (
            "http://hl7.org/fhir/assert-response-code-types",
            (
                "bad conflict created forbidden gone methodNotAllowed noContent notFound "
                "notModified okay preconditionFailed unprocessable"
            ),
        ),
    ),
    "audit-event-action": (("http://hl7.org/fhir/audit-event-action", "C D E R U"),),
    "audit-event-outcome": (("http://hl7.org/fhir/audit-event-outcome", "0 12 4 8"),),
    "binding-strength": (("http://hl7.org/fhir/binding-strength", "example extensible preferred required"),),
    "bundle-type": (
        (
            "http://hl7.org/fhir/bundle-type",
            ("batch batch-response collection document history message searchset transaction transaction-response"),
        ),
    ),
    "capability-statement-kind": (
        ("http://hl7.org/fhir/capability-statement-kind", "capability instance requirements"),
    ),
    "care-plan-activity-kind": (
        (
            "http://hl7.org/fhir/resource-types",
            (
                "Appointment CommunicationRequest DeviceRequest MedicationRequest "
                "NutritionOrder ServiceRequest Task VisionPrescription"
            ),
        ),
    ),
    "care-plan-activity-status": (
        (
            "http://hl7.org/fhir/care-plan-activity-status",
            ("cancelled completed entered-in-error in-progress not-started on-hold scheduled stopped unknown"),
        ),
    ),
    "care-plan-intent": (("http://hl7.org/fhir/request-intent", "option order plan proposal"),),
    "care-team-status": (
        ("http://hl7.org/fhir/care-team-status", "active entered-in-error inactive proposed suspended"),
    ),
    "chargeitem-status": (
        (
            "http://hl7.org/fhir/chargeitem-status",
            "aborted billable billed entered-in-error not-billable planned unknown",
        ),
    ),
    "claim-use": (("http://hl7.org/fhir/claim-use", "claim preauthorization predetermination"),),
    "clinicalimpression-status": (("http://hl7.org/fhir/event-status", "completed entered-in-error in-progress"),),
    "code-search-support": (("http://hl7.org/fhir/code-search-support", "all explicit"),),
    "codesystem-content-mode": (
        ("http://hl7.org/fhir/codesystem-content-mode", "complete example fragment not-present supplement"),
    ),
    "codesystem-hierarchy-meaning": (
        ("http://hl7.org/fhir/codesystem-hierarchy-meaning", "classified-with grouped-by is-a part-of"),
    ),
    "compartment-type": (
        ("http://hl7.org/fhir/compartment-type", "Device Encounter Patient Practitioner RelatedPerson"),
    ),
    "composition-attestation-mode": (
        ("http://hl7.org/fhir/composition-attestation-mode", "legal official personal professional"),
    ),
    "composition-status": (("http://hl7.org/fhir/composition-status", "amended entered-in-error final preliminary"),),
    "concept-map-equivalence": (
        (
            "http://hl7.org/fhir/concept-map-equivalence",
            ("disjoint equal equivalent inexact narrower relatedto specializes subsumes unmatched wider"),
        ),
    ),
    "concept-property-type": (
        ("http://hl7.org/fhir/concept-property-type", "Coding boolean code dateTime decimal integer string"),
    ),
    "conceptmap-unmapped-mode": (("http://hl7.org/fhir/conceptmap-unmapped-mode", "fixed other-map provided"),),
    "condition-clinical": (
        (
            "http://terminology.hl7.org/CodeSystem/condition-clinical",
            "active inactive recurrence relapse remission resolved",
        ),
    ),
    "condition-ver-status": (
        (
            "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "confirmed differential entered-in-error provisional refuted unconfirmed",
        ),
    ),
    "conditional-delete-status": (("http://hl7.org/fhir/conditional-delete-status", "multiple not-supported single"),),
    "conditional-read-status": (
        ("http://hl7.org/fhir/conditional-read-status", "full-support modified-since not-match not-supported"),
    ),
    "consent-data-meaning": (("http://hl7.org/fhir/consent-data-meaning", "authoredby dependents instance related"),),
    "consent-provision-type": (("http://hl7.org/fhir/consent-provision-type", "deny permit"),),
    "consent-state-codes": (
        ("http://hl7.org/fhir/consent-state-codes", "active draft entered-in-error inactive proposed rejected"),
    ),
    "constraint-severity": (("http://hl7.org/fhir/constraint-severity", "error warning"),),
    "contact-point-system": (("http://hl7.org/fhir/contact-point-system", "email fax other pager phone sms url"),),
    "contact-point-use": (("http://hl7.org/fhir/contact-point-use", "home mobile old temp work"),),
    "contract-publicationstatus": (
        (
            "http://hl7.org/fhir/contract-publicationstatus",
            (
                "amended appended cancelled disputed entered-in-error executable executed "
                "negotiable offered policy rejected renewed resolved revoked terminated"
            ),
        ),
    ),
    "contract-status": (
        (
            "http://hl7.org/fhir/contract-status",
            (
                "amended appended cancelled disputed entered-in-error executable executed "
                "negotiable offered policy rejected renewed resolved revoked terminated"
            ),
        ),
    ),
    "contributor-type": (("http://hl7.org/fhir/contributor-type", "author editor endorser reviewer"),),
    "days-of-week": (("http://hl7.org/fhir/days-of-week", "fri mon sat sun thu tue wed"),),
    "defined-types": (
        (
            "http://hl7.org/fhir/data-types",
            (
                "Address Age Annotation Attachment BackboneElement CodeableConcept Coding "
                "ContactDetail ContactPoint Contributor Count DataRequirement Distance Dosage "
                "Duration Element ElementDefinition Expression Extension HumanName Identifier "
                "MarketingStatus Meta Money MoneyQuantity Narrative ParameterDefinition "
                "Period Population ProdCharacteristic ProductShelfLife Quantity Range Ratio "
                "Reference RelatedArtifact SampledData Signature SimpleQuantity "
                "SubstanceAmount Timing TriggerDefinition UsageContext base64Binary boolean "
                "canonical code date dateTime decimal id instant integer markdown oid "
                "positiveInt string time unsignedInt uri url uuid xhtml"
            ),
        ),
        (
            "http://hl7.org/fhir/resource-types",
            (
                "Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment "
                "AppointmentResponse AuditEvent Basic Binary BiologicallyDerivedProduct "
                "BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry "
                "ChargeItem ChargeItemDefinition Claim ClaimResponse ClinicalImpression "
                "CodeSystem Communication CommunicationRequest CompartmentDefinition "
                "Composition ConceptMap Condition Consent Contract Coverage "
                "CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device "
                "DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement "
                "DiagnosticReport DocumentManifest DocumentReference DomainResource "
                "EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest "
                "EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable "
                "ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal "
                "GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy "
                "Immunization ImmunizationEvaluation ImmunizationRecommendation "
                "ImplementationGuide InsurancePlan Invoice Library Linkage List Location "
                "Measure MeasureReport Media Medication MedicationAdministration "
                "MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement "
                "MedicinalProduct MedicinalProductAuthorization "
                "MedicinalProductContraindication MedicinalProductIndication "
                "MedicinalProductIngredient MedicinalProductInteraction "
                "MedicinalProductManufactured MedicinalProductPackaged "
                "MedicinalProductPharmaceutical MedicinalProductUndesirableEffect "
                "MessageDefinition MessageHeader MolecularSequence NamingSystem "
                "NutritionOrder Observation ObservationDefinition OperationDefinition "
                "OperationOutcome Organization OrganizationAffiliation Parameters Patient "
                "PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner "
                "PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse "
                "RelatedPerson RequestGroup ResearchDefinition ResearchElementDefinition "
                "ResearchStudy ResearchSubject Resource RiskAssessment RiskEvidenceSynthesis "
                "Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition "
                "StructureDefinition StructureMap Subscription Substance SubstanceNucleicAcid "
                "SubstancePolymer SubstanceProtein SubstanceReferenceInformation "
                "SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest "
                "Task TerminologyCapabilities TestReport TestScript ValueSet "
                "VerificationResult VisionPrescription"
            ),
        ),
    ),
    "detectedissue-severity": (("http://hl7.org/fhir/detectedissue-severity", "high low moderate"),),
    "device-nametype": (
        (
            "http://hl7.org/fhir/device-nametype",
            ("manufacturer-name model-name other patient-reported-name udi-label-name user-friendly-name"),
        ),
    ),
    "device-statement-status": (
        ("http://hl7.org/fhir/device-statement-status", "active completed entered-in-error intended on-hold stopped"),
    ),
    "device-status": (("http://hl7.org/fhir/device-status", "active entered-in-error inactive unknown"),),
    "diagnostic-report-status": (
        (
            "http://hl7.org/fhir/diagnostic-report-status",
            ("amended appended cancelled corrected entered-in-error final partial preliminary registered unknown"),
        ),
    ),
    "discriminator-type": (("http://hl7.org/fhir/discriminator-type", "exists pattern profile type value"),),
    "document-mode": (("http://hl7.org/fhir/document-mode", "consumer producer"),),
    "document-reference-status": (
        ("http://hl7.org/fhir/document-reference-status", "current entered-in-error superseded"),
    ),
    "document-relationship-type": (
        ("http://hl7.org/fhir/document-relationship-type", "appends replaces signs transforms"),
    ),
    "eligibilityrequest-purpose": (
        ("http://hl7.org/fhir/eligibilityrequest-purpose", "auth-requirements benefits discovery validation"),
    ),
    "eligibilityresponse-purpose": (
        ("http://hl7.org/fhir/eligibilityresponse-purpose", "auth-requirements benefits discovery validation"),
    ),
    "encounter-location-status": (
        ("http://hl7.org/fhir/encounter-location-status", "active completed planned reserved"),
    ),
    "encounter-status": (
        (
            "http://hl7.org/fhir/encounter-status",
            ("arrived cancelled entered-in-error finished in-progress onleave planned triaged unknown"),
        ),
    ),
    "endpoint-status": (("http://hl7.org/fhir/endpoint-status", "active entered-in-error error off suspended test"),),
    "episode-of-care-status": (
        (
            "http://hl7.org/fhir/episode-of-care-status",
            "active cancelled entered-in-error finished onhold planned waitlist",
        ),
    ),
    "event-capability-mode": (("http://hl7.org/fhir/event-capability-mode", "receiver sender"),),
    "event-status": (
        (
            "http://hl7.org/fhir/event-status",
            ("completed entered-in-error in-progress not-done on-hold preparation stopped unknown"),
        ),
    ),
    "event-timing": (
        (
            "http://hl7.org/fhir/event-timing",
            ("AFT AFT.early AFT.late EVE EVE.early EVE.late MORN MORN.early MORN.late NIGHT NOON PHS"),
        ),
        ("http://terminology.hl7.org/CodeSystem/v3-TimingEvent", "AC ACD ACM ACV C CD CM CV HS PC PCD PCM PCV WAKE"),
    ),
    "examplescenario-actor-type": (("http://hl7.org/fhir/examplescenario-actor-type", "entity person"),),
    "explanationofbenefit-status": (
        ("http://hl7.org/fhir/explanationofbenefit-status", "active cancelled draft entered-in-error"),
    ),
    "exposure-state": (("http://hl7.org/fhir/exposure-state", "exposure exposure-alternative"),),
    "extension-context-type": (("http://hl7.org/fhir/extension-context-type", "element extension fhirpath"),),
    "filter-operator": (
        ("http://hl7.org/fhir/filter-operator", "= descendent-of exists generalizes in is-a is-not-a not-in regex"),
    ),
    "flag-status": (("http://hl7.org/fhir/flag-status", "active entered-in-error inactive"),),
    "fm-status": (("http://hl7.org/fhir/fm-status", "active cancelled draft entered-in-error"),),
    "goal-status": (
        (
            "http://hl7.org/fhir/goal-status",
            ("accepted active cancelled completed entered-in-error on-hold planned proposed rejected"),
        ),
    ),
    "graph-compartment-rule": (("http://hl7.org/fhir/graph-compartment-rule", "custom different identical matching"),),
    "graph-compartment-use": (("http://hl7.org/fhir/graph-compartment-use", "condition requirement"),),
    "group-measure": (
        (
            "http://hl7.org/fhir/group-measure",
            "mean mean-of-mean mean-of-median median median-of-mean median-of-median",
        ),
    ),
    "group-type": (("http://hl7.org/fhir/group-type", "animal device medication person practitioner substance"),),
    "guidance-response-status": (
        (
            "http://hl7.org/fhir/guidance-response-status",
            "data-requested data-required entered-in-error failure in-progress success",
        ),
    ),
    "guide-page-generation": (("http://hl7.org/fhir/guide-page-generation", "generated html markdown xml"),),
    "guide-parameter-code": (
        (
            "http://hl7.org/fhir/guide-parameter-code",
            (
                "apply expansion-parameter generate-json generate-turtle generate-xml "
                "html-template path-pages path-resource path-tx-cache rule-broken-links"
            ),
        ),
    ),
    "history-status": (("http://hl7.org/fhir/history-status", "completed entered-in-error health-unknown partial"),),
    "http-operations": (("http://hl7.org/fhir/http-operations", "delete get head options patch post put"),),
    "http-verb": (("http://hl7.org/fhir/http-verb", "DELETE GET HEAD PATCH POST PUT"),),
    "identifier-use": (("http://hl7.org/fhir/identifier-use", "official old secondary temp usual"),),
    "identity-assuranceLevel": (("http://hl7.org/fhir/identity-assuranceLevel", "level1 level2 level3 level4"),),
    "imagingstudy-status": (
        ("http://hl7.org/fhir/imagingstudy-status", "available cancelled entered-in-error registered unknown"),
    ),
    "immunization-evaluation-status": (
        ("http://terminology.hl7.org/CodeSystem/medication-admin-status", "completed entered-in-error"),
    ),
    "immunization-status": (("http://hl7.org/fhir/event-status", "completed entered-in-error not-done"),),
    "insuranceplan-applicability": (
        ("http://terminology.hl7.org/CodeSystem/applicability", "in-network other out-of-network"),
    ),
    "invoice-priceComponentType": (
        ("http://hl7.org/fhir/invoice-priceComponentType", "base deduction discount informational surcharge tax"),
    ),
    "invoice-status": (("http://hl7.org/fhir/invoice-status", "balanced cancelled draft entered-in-error issued"),),
    "issue-severity": (("http://hl7.org/fhir/issue-severity", "error fatal information warning"),),
    "issue-type": (
        (
            "http://hl7.org/fhir/issue-type",
            (
                "business-rule code-invalid conflict deleted duplicate exception expired "
                "extension forbidden incomplete informational invalid invariant lock-error "
                "login multiple-matches no-store not-found not-supported processing required "
                "security structure suppressed throttled timeout too-costly too-long "
                "transient unknown value"
            ),
        ),
    ),
    "item-type": (
        (
            "http://hl7.org/fhir/item-type",
            (
                "attachment boolean choice date dateTime decimal display group integer "
                "open-choice quantity question reference string text time url"
            ),
        ),
    ),
    "link-type": (("http://hl7.org/fhir/link-type", "refer replaced-by replaces seealso"),),
    "linkage-type": (("http://hl7.org/fhir/linkage-type", "alternate historical source"),),
    "list-mode": (("http://hl7.org/fhir/list-mode", "changes snapshot working"),),
    "list-status": (("http://hl7.org/fhir/list-status", "current entered-in-error retired"),),
    "location-mode": (("http://hl7.org/fhir/location-mode", "instance kind"),),
    "location-status": (("http://hl7.org/fhir/location-status", "active inactive suspended"),),
    "map-context-type": (("http://hl7.org/fhir/map-context-type", "type variable"),),
    "map-group-type-mode": (("http://hl7.org/fhir/map-group-type-mode", "none type-and-types types"),),
    "map-input-mode": (("http://hl7.org/fhir/map-input-mode", "source target"),),
    "map-model-mode": (("http://hl7.org/fhir/map-model-mode", "produced queried source target"),),
    "map-source-list-mode": (("http://hl7.org/fhir/map-source-list-mode", "first last not_first not_last only_one"),),
    "map-target-list-mode": (("http://hl7.org/fhir/map-target-list-mode", "collate first last share"),),
    "map-transform": (
        (
            "http://hl7.org/fhir/map-transform",
            ("append c cast cc copy cp create dateOp escape evaluate id pointer qty reference translate truncate uuid"),
        ),
    ),
    "measure-improvement-notation": (
        ("http://terminology.hl7.org/CodeSystem/measure-improvement-notation", "decrease increase"),
    ),
    "measure-report-status": (("http://hl7.org/fhir/measure-report-status", "complete error pending"),),
    "measure-report-type": (
        ("http://hl7.org/fhir/measure-report-type", "data-collection individual subject-list summary"),
    ),
    "medication-admin-status": (
        (
            "http://terminology.hl7.org/CodeSystem/medication-admin-status",
            "completed entered-in-error in-progress not-done on-hold stopped unknown",
        ),
    ),
    "medication-statement-status": (
        (
            "http://hl7.org/fhir/CodeSystem/medication-statement-status",
            "active completed entered-in-error intended not-taken on-hold stopped unknown",
        ),
    ),
    "medication-status": (("http://hl7.org/fhir/CodeSystem/medication-status", "active entered-in-error inactive"),),
    "medicationdispense-status": (
        (
            "http://terminology.hl7.org/CodeSystem/medicationdispense-status",
            ("cancelled completed declined entered-in-error in-progress on-hold preparation stopped unknown"),
        ),
    ),
    "medicationknowledge-status": (
        ("http://terminology.hl7.org/CodeSystem/medicationknowledge-status", "active entered-in-error inactive"),
    ),
    "medicationrequest-intent": (
        (
            "http://hl7.org/fhir/CodeSystem/medicationrequest-intent",
            ("filler-order instance-order option order original-order plan proposal reflex-order"),
        ),
    ),
    "medicationrequest-status": (
        (
            "http://hl7.org/fhir/CodeSystem/medicationrequest-status",
            "active cancelled completed draft entered-in-error on-hold stopped unknown",
        ),
    ),
    "message-significance-category": (
        ("http://hl7.org/fhir/message-significance-category", "consequence currency notification"),
    ),
    "messageheader-response-request": (
        ("http://hl7.org/fhir/messageheader-response-request", "always never on-error on-success"),
    ),
    "metric-calibration-state": (
        ("http://hl7.org/fhir/metric-calibration-state", "calibrated calibration-required not-calibrated unspecified"),
    ),
    "metric-calibration-type": (("http://hl7.org/fhir/metric-calibration-type", "gain offset two-point unspecified"),),
    "metric-category": (("http://hl7.org/fhir/metric-category", "calculation measurement setting unspecified"),),
    "metric-color": (("http://hl7.org/fhir/metric-color", "black blue cyan green magenta red white yellow"),),
    "metric-operational-status": (
        ("http://hl7.org/fhir/metric-operational-status", "entered-in-error off on standby"),
    ),
    "name-use": (("http://hl7.org/fhir/name-use", "anonymous maiden nickname official old temp usual"),),
    "namingsystem-identifier-type": (("http://hl7.org/fhir/namingsystem-identifier-type", "oid other uri uuid"),),
    "namingsystem-type": (("http://hl7.org/fhir/namingsystem-type", "codesystem identifier root"),),
    "narrative-status": (("http://hl7.org/fhir/narrative-status", "additional empty extensions generated"),),
    "network-type": (("http://hl7.org/fhir/network-type", "1 2 3 4 5"),),
    "note-type": (("http://hl7.org/fhir/note-type", "display print printoper"),),
    "observation-range-category": (("http://hl7.org/fhir/observation-range-category", "absolute critical reference"),),
    "observation-status": (
        (
            "http://hl7.org/fhir/observation-status",
            ("amended cancelled corrected entered-in-error final preliminary registered unknown"),
        ),
    ),
    "operation-kind": (("http://hl7.org/fhir/operation-kind", "operation query"),),
    "operation-parameter-use": (("http://hl7.org/fhir/operation-parameter-use", "in out"),),
    "orientation-type": (("http://hl7.org/fhir/orientation-type", "antisense sense"),),
    "participantrequired": (("http://hl7.org/fhir/participantrequired", "information-only optional required"),),
    "participationstatus": (("http://hl7.org/fhir/participationstatus", "accepted declined needs-action tentative"),),
    "permitted-data-type": (
        (
            "http://hl7.org/fhir/permitted-data-type",
            ("CodeableConcept Period Quantity Range Ratio SampledData boolean dateTime integer string time"),
        ),
    ),
    "product-category": (("http://hl7.org/fhir/product-category", "biologicalAgent cells fluid organ tissue"),),
    "product-status": (("http://hl7.org/fhir/product-status", "available unavailable"),),
    "product-storage-scale": (("http://hl7.org/fhir/product-storage-scale", "celsius farenheit kelvin"),),
    "property-representation": (
        ("http://hl7.org/fhir/property-representation", "cdaText typeAttr xhtml xmlAttr xmlText"),
    ),
    "provenance-entity-role": (
        ("http://hl7.org/fhir/provenance-entity-role", "derivation quotation removal revision source"),
    ),
    "publication-status": (("http://hl7.org/fhir/publication-status", "active draft retired unknown"),),
    "quality-type": (("http://hl7.org/fhir/quality-type", "indel snp unknown"),),
    "quantity-comparator": (("http://hl7.org/fhir/quantity-comparator", "< <= > >="),),
    "questionnaire-answers-status": (
        ("http://hl7.org/fhir/questionnaire-answers-status", "amended completed entered-in-error in-progress stopped"),
    ),
    "questionnaire-enable-behavior": (("http://hl7.org/fhir/questionnaire-enable-behavior", "all any"),),
    "questionnaire-enable-operator": (("http://hl7.org/fhir/questionnaire-enable-operator", "!= < <= = > >= exists"),),
    "reaction-event-severity": (("http://hl7.org/fhir/reaction-event-severity", "mild moderate severe"),),
    "reference-handling-policy": (
        ("http://hl7.org/fhir/reference-handling-policy", "enforced literal local logical resolves"),
    ),
    "reference-version-rules": (("http://hl7.org/fhir/reference-version-rules", "either independent specific"),),
    "related-artifact-type": (
        (
            "http://hl7.org/fhir/related-artifact-type",
            ("citation composed-of depends-on derived-from documentation justification predecessor successor"),
        ),
    ),
    "relation-type": (("http://hl7.org/fhir/relation-type", "is-replaced-by triggers"),),
    "remittance-outcome": (("http://hl7.org/fhir/remittance-outcome", "complete error partial queued"),),
    "report-action-result-codes": (("http://hl7.org/fhir/report-action-result-codes", "error fail pass skip warning"),),
    "report-participant-type": (("http://hl7.org/fhir/report-participant-type", "client server test-engine"),),
    "report-result-codes": (("http://hl7.org/fhir/report-result-codes", "fail pass pending"),),
    "report-status-codes": (
        ("http://hl7.org/fhir/report-status-codes", "completed entered-in-error in-progress stopped waiting"),
    ),
    "repository-type": (("http://hl7.org/fhir/repository-type", "directlink login oauth openapi other"),),
    "request-intent": (
        (
            "http://hl7.org/fhir/request-intent",
            ("directive filler-order instance-order option order original-order plan proposal reflex-order"),
        ),
    ),
    "request-priority": (("http://hl7.org/fhir/request-priority", "asap routine stat urgent"),),
    "request-resource-types": (
        (
            "http://hl7.org/fhir/request-resource-types",
            (
                "Appointment AppointmentResponse CarePlan Claim CommunicationRequest Contract "
                "DeviceRequest EnrollmentRequest ImmunizationRecommendation MedicationRequest "
                "NutritionOrder ServiceRequest SupplyRequest Task VisionPrescription"
            ),
        ),
    ),
    "request-status": (
        ("http://hl7.org/fhir/request-status", "active completed draft entered-in-error on-hold revoked unknown"),
    ),
    "research-element-type": (("http://hl7.org/fhir/research-element-type", "exposure outcome population"),),
    "research-study-status": (
        (
            "http://hl7.org/fhir/research-study-status",
            (
                "active administratively-completed approved closed-to-accrual "
                "closed-to-accrual-and-intervention completed disapproved in-review "
                "temporarily-closed-to-accrual temporarily-closed-to-accrual-and-intervention "
                "withdrawn"
            ),
        ),
    ),
    "research-subject-status": (
        (
            "http://hl7.org/fhir/research-subject-status",
            (
                "candidate eligible follow-up ineligible not-registered off-study on-study "
                "on-study-intervention on-study-observation pending-on-study "
                "potential-candidate screening withdrawn"
            ),
        ),
    ),
    "resource-aggregation-mode": (("http://hl7.org/fhir/resource-aggregation-mode", "bundled contained referenced"),),
    "resource-slicing-rules": (("http://hl7.org/fhir/resource-slicing-rules", "closed open openAtEnd"),),
    "resource-types": (
        (
            "http://hl7.org/fhir/resource-types",
            (
                "Account ActivityDefinition AdverseEvent AllergyIntolerance Appointment "
                "AppointmentResponse AuditEvent Basic Binary BiologicallyDerivedProduct "
                "BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry "
                "ChargeItem ChargeItemDefinition Claim ClaimResponse ClinicalImpression "
                "CodeSystem Communication CommunicationRequest CompartmentDefinition "
                "Composition ConceptMap Condition Consent Contract Coverage "
                "CoverageEligibilityRequest CoverageEligibilityResponse DetectedIssue Device "
                "DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement "
                "DiagnosticReport DocumentManifest DocumentReference DomainResource "
                "EffectEvidenceSynthesis Encounter Endpoint EnrollmentRequest "
                "EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceVariable "
                "ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal "
                "GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy "
                "Immunization ImmunizationEvaluation ImmunizationRecommendation "
                "ImplementationGuide InsurancePlan Invoice Library Linkage List Location "
                "Measure MeasureReport Media Medication MedicationAdministration "
                "MedicationDispense MedicationKnowledge MedicationRequest MedicationStatement "
                "MedicinalProduct MedicinalProductAuthorization "
                "MedicinalProductContraindication MedicinalProductIndication "
                "MedicinalProductIngredient MedicinalProductInteraction "
                "MedicinalProductManufactured MedicinalProductPackaged "
                "MedicinalProductPharmaceutical MedicinalProductUndesirableEffect "
                "MessageDefinition MessageHeader MolecularSequence NamingSystem "
                "NutritionOrder Observation ObservationDefinition OperationDefinition "
                "OperationOutcome Organization OrganizationAffiliation Parameters Patient "
                "PaymentNotice PaymentReconciliation Person PlanDefinition Practitioner "
                "PractitionerRole Procedure Provenance Questionnaire QuestionnaireResponse "
                "RelatedPerson RequestGroup ResearchDefinition ResearchElementDefinition "
                "ResearchStudy ResearchSubject Resource RiskAssessment RiskEvidenceSynthesis "
                "Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition "
                "StructureDefinition StructureMap Subscription Substance SubstanceNucleicAcid "
                "SubstancePolymer SubstanceProtein SubstanceReferenceInformation "
                "SubstanceSourceMaterial SubstanceSpecification SupplyDelivery SupplyRequest "
                "Task TerminologyCapabilities TestReport TestScript ValueSet "
                "VerificationResult VisionPrescription"
            ),
        ),
    ),
    "response-code": (("http://hl7.org/fhir/response-code", "fatal-error ok transient-error"),),
    "restful-capability-mode": (("http://hl7.org/fhir/restful-capability-mode", "client server"),),
    "search-comparator": (("http://hl7.org/fhir/search-comparator", "ap eb eq ge gt le lt ne sa"),),
    "search-entry-mode": (("http://hl7.org/fhir/search-entry-mode", "include match outcome"),),
    "search-modifier-code": (
        (
            "http://hl7.org/fhir/search-modifier-code",
            "above below contains exact identifier in missing not not-in ofType text type",
        ),
    ),
    "search-param-type": (
        ("http://hl7.org/fhir/search-param-type", "composite date number quantity reference special string token uri"),
    ),
    "search-xpath-usage": (("http://hl7.org/fhir/search-xpath-usage", "distance nearby normal other phonetic"),),
    "sequence-type": (("http://hl7.org/fhir/sequence-type", "aa dna rna"),),
    "slotstatus": (("http://hl7.org/fhir/slotstatus", "busy busy-tentative busy-unavailable entered-in-error free"),),
    "sort-direction": (("http://hl7.org/fhir/sort-direction", "ascending descending"),),
    "spdx-license": (
        (
            "http://hl7.org/fhir/spdx-license",
            (
                "0BSD AAL ADSL AFL-1.1 AFL-1.2 AFL-2.0 AFL-2.1 AFL-3.0 AGPL-1.0-only "
                "AGPL-1.0-or-later AGPL-3.0-only AGPL-3.0-or-later AMDPLPA AML AMPAS ANTLR-PD "
                "APAFML APL-1.0 APSL-1.0 APSL-1.1 APSL-1.2 APSL-2.0 Abstyles Adobe-2006 "
                "Adobe-Glyph Afmparse Aladdin Apache-1.0 Apache-1.1 Apache-2.0 Artistic-1.0 "
                "Artistic-1.0-Perl Artistic-1.0-cl8 Artistic-2.0 BSD-1-Clause BSD-2-Clause "
                "BSD-2-Clause-FreeBSD BSD-2-Clause-NetBSD BSD-2-Clause-Patent BSD-3-Clause "
                "BSD-3-Clause-Attribution BSD-3-Clause-Clear BSD-3-Clause-LBNL "
                "BSD-3-Clause-No-Nuclear-License BSD-3-Clause-No-Nuclear-License-2014 "
                "BSD-3-Clause-No-Nuclear-Warranty BSD-4-Clause BSD-4-Clause-UC BSD-Protection "
                "BSD-Source-Code BSL-1.0 Bahyph Barr Beerware BitTorrent-1.0 BitTorrent-1.1 "
                "Borceux CATOSL-1.1 CC-BY-1.0 CC-BY-2.0 CC-BY-2.5 CC-BY-3.0 CC-BY-4.0 "
                "CC-BY-NC-1.0 CC-BY-NC-2.0 CC-BY-NC-2.5 CC-BY-NC-3.0 CC-BY-NC-4.0 "
                "CC-BY-NC-ND-1.0 CC-BY-NC-ND-2.0 CC-BY-NC-ND-2.5 CC-BY-NC-ND-3.0 "
                "CC-BY-NC-ND-4.0 CC-BY-NC-SA-1.0 CC-BY-NC-SA-2.0 CC-BY-NC-SA-2.5 "
                "CC-BY-NC-SA-3.0 CC-BY-NC-SA-4.0 CC-BY-ND-1.0 CC-BY-ND-2.0 CC-BY-ND-2.5 "
                "CC-BY-ND-3.0 CC-BY-ND-4.0 CC-BY-SA-1.0 CC-BY-SA-2.0 CC-BY-SA-2.5 "
                "CC-BY-SA-3.0 CC-BY-SA-4.0 CC0-1.0 CDDL-1.0 CDDL-1.1 CDLA-Permissive-1.0 "
                "CDLA-Sharing-1.0 CECILL-1.0 CECILL-1.1 CECILL-2.0 CECILL-2.1 CECILL-B "
                "CECILL-C CNRI-Jython CNRI-Python CNRI-Python-GPL-Compatible CPAL-1.0 CPL-1.0 "
                "CPOL-1.02 CUA-OPL-1.0 Caldera ClArtistic Condor-1.1 Crossword CrystalStacker "
                "Cube D-FSL-1.0 DOC DSDP Dotseqn ECL-1.0 ECL-2.0 EFL-1.0 EFL-2.0 EPL-1.0 "
                "EPL-2.0 EUDatagrid EUPL-1.0 EUPL-1.1 EUPL-1.2 Entessa ErlPL-1.1 Eurosym "
                "FSFAP FSFUL FSFULLR FTL Fair Frameworx-1.0 FreeImage GFDL-1.1-only "
                "GFDL-1.1-or-later GFDL-1.2-only GFDL-1.2-or-later GFDL-1.3-only "
                "GFDL-1.3-or-later GL2PS GPL-1.0-only GPL-1.0-or-later GPL-2.0-only "
                "GPL-2.0-or-later GPL-3.0-only GPL-3.0-or-later Giftware Glide Glulxe HPND "
                "HaskellReport IBM-pibs ICU IJG IPA IPL-1.0 ISC ImageMagick Imlib2 Info-ZIP "
                "Intel Intel-ACPI Interbase-1.0 JSON JasPer-2.0 LAL-1.2 LAL-1.3 LGPL-2.0-only "
                "LGPL-2.0-or-later LGPL-2.1-only LGPL-2.1-or-later LGPL-3.0-only "
                "LGPL-3.0-or-later LGPLLR LPL-1.0 LPL-1.02 LPPL-1.0 LPPL-1.1 LPPL-1.2 "
                "LPPL-1.3a LPPL-1.3c Latex2e Leptonica LiLiQ-P-1.1 LiLiQ-R-1.1 "
                "LiLiQ-Rplus-1.1 Libpng Linux-OpenIB MIT MIT-0 MIT-CMU MIT-advertising "
                "MIT-enna MIT-feh MITNFA MPL-1.0 MPL-1.1 MPL-2.0 "
                "MPL-2.0-no-copyleft-exception MS-PL MS-RL MTLL MakeIndex MirOS Motosoto "
                "Multics Mup NASA-1.3 NBPL-1.0 NCSA NGPL NLOD-1.0 NLPL NOSL NPL-1.0 NPL-1.1 "
                "NPOSL-3.0 NRL NTP Naumen Net-SNMP NetCDF Newsletr Nokia Noweb OCCT-PL "
                "OCLC-2.0 ODbL-1.0 OFL-1.0 OFL-1.1 OGTSL OLDAP-1.1 OLDAP-1.2 OLDAP-1.3 "
                "OLDAP-1.4 OLDAP-2.0 OLDAP-2.0.1 OLDAP-2.1 OLDAP-2.2 OLDAP-2.2.1 OLDAP-2.2.2 "
                "OLDAP-2.3 OLDAP-2.4 OLDAP-2.5 OLDAP-2.6 OLDAP-2.7 OLDAP-2.8 OML OPL-1.0 "
                "OSET-PL-2.1 OSL-1.0 OSL-1.1 OSL-2.0 OSL-2.1 OSL-3.0 OpenSSL PDDL-1.0 PHP-3.0 "
                "PHP-3.01 Plexus PostgreSQL Python-2.0 QPL-1.0 Qhull RHeCos-1.1 RPL-1.1 "
                "RPL-1.5 RPSL-1.0 RSA-MD RSCPL Rdisc Ruby SAX-PD SCEA SGI-B-1.0 SGI-B-1.1 "
                "SGI-B-2.0 SISSL SISSL-1.2 SMLNJ SMPPL SNIA SPL-1.0 SWL Saxpath Sendmail "
                "SimPL-2.0 Sleepycat Spencer-86 Spencer-94 Spencer-99 SugarCRM-1.1.3 TCL "
                "TCP-wrappers TMate TORQUE-1.1 TOSL UPL-1.0 Unicode-DFS-2015 Unicode-DFS-2016 "
                "Unicode-TOU Unlicense VOSTROM VSL-1.0 Vim W3C W3C-19980720 W3C-20150513 "
                "WTFPL Watcom-1.0 Wsuipa X11 XFree86-1.1 XSkat Xerox Xnet YPL-1.0 YPL-1.1 "
                "ZPL-1.1 ZPL-2.0 ZPL-2.1 Zed Zend-2.0 Zimbra-1.3 Zimbra-1.4 Zlib bzip2-1.0.5 "
                "bzip2-1.0.6 curl diffmark dvipdfm eGenix gSOAP-1.3b gnuplot iMatix libtiff "
                "mpich2 not-open-source psfrag psutils xinetd xpp zlib-acknowledgement"
            ),
        ),
    ),
    "specimen-contained-preference": (("http://hl7.org/fhir/specimen-contained-preference", "alternate preferred"),),
    "specimen-status": (
        ("http://hl7.org/fhir/specimen-status", "available entered-in-error unavailable unsatisfactory"),
    ),
    "strand-type": (("http://hl7.org/fhir/strand-type", "crick watson"),),
    "structure-definition-kind": (
        ("http://hl7.org/fhir/structure-definition-kind", "complex-type logical primitive-type resource"),
    ),
    "subscription-channel-type": (
        ("http://hl7.org/fhir/subscription-channel-type", "email message rest-hook sms websocket"),
    ),
    "subscription-status": (("http://hl7.org/fhir/subscription-status", "active error off requested"),),
    "substance-status": (("http://hl7.org/fhir/substance-status", "active entered-in-error inactive"),),
    "supplydelivery-status": (
        ("http://hl7.org/fhir/supplydelivery-status", "abandoned completed entered-in-error in-progress"),
    ),
    "supplydelivery-type": (("http://terminology.hl7.org/CodeSystem/supply-item-type", "device medication"),),
    "supplyrequest-status": (
        (
            "http://hl7.org/fhir/supplyrequest-status",
            "active cancelled completed draft entered-in-error suspended unknown",
        ),
    ),
    "system-restful-interaction": (
        ("http://hl7.org/fhir/restful-interaction", "batch history-system search-system transaction"),
    ),
    "task-intent": (
        ("http://hl7.org/fhir/task-intent", "unknown"),
        (
            "http://hl7.org/fhir/request-intent",
            ("filler-order instance-order option order original-order plan proposal reflex-order"),
        ),
    ),
    "task-status": (
        (
            "http://hl7.org/fhir/task-status",
            (
                "accepted cancelled completed draft entered-in-error failed in-progress "
                "on-hold ready received rejected requested"
            ),
        ),
    ),
    "trigger-type": (
        (
            "http://hl7.org/fhir/trigger-type",
            ("data-access-ended data-accessed data-added data-changed data-modified data-removed named-event periodic"),
        ),
    ),
    "type-derivation-rule": (("http://hl7.org/fhir/type-derivation-rule", "constraint specialization"),),
    "type-restful-interaction": (
        (
            "http://hl7.org/fhir/restful-interaction",
            ("create delete history-instance history-type patch read search-type update vread"),
        ),
    ),
    "udi-entry-type": (("http://hl7.org/fhir/udi-entry-type", "barcode card manual rfid self-reported unknown"),),
    "units-of-time": (("http://unitsofmeasure.org", "a d h min mo s wk"),),
    "v3-ConfidentialityClassification": (("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "L M N R U V"),),
    "variable-type": (("http://hl7.org/fhir/variable-type", "continuous descriptive dichotomous"),),
    "verificationresult-status": (
        ("http://hl7.org/fhir/CodeSystem/status", "attested in-process req-revalid reval-fail val-fail validated"),
    ),
    "versioning-policy": (("http://hl7.org/fhir/versioning-policy", "no-version versioned versioned-update"),),
    "vision-base-codes": (("http://hl7.org/fhir/vision-base-codes", "down in out up"),),
    "vision-eye-codes": (("http://hl7.org/fhir/vision-eye-codes", "left right"),),
}

MODEL_BINDINGS: dict[str, str] = {
    "Account.status": "account-status",
    "ActivityDefinition.intent": "request-intent",
    "ActivityDefinition.kind": "request-resource-types",
    "ActivityDefinition.priority": "request-priority",
    "ActivityDefinition.status": "publication-status",
    "ActivityDefinitionParticipant.type": "action-participant-type",
    "Address.type": "address-type",
    "Address.use": "address-use",
    "AdverseEvent.actuality": "adverse-event-actuality",
    "AdverseEvent.outcome": "adverse-event-outcome",
    "AdverseEvent.severity": "adverse-event-severity",
    "Age.comparator": "quantity-comparator",
    "AllergyIntolerance.category": "allergy-intolerance-category",
    "AllergyIntolerance.clinicalStatus": "allergyintolerance-clinical",
    "AllergyIntolerance.criticality": "allergy-intolerance-criticality",
    "AllergyIntolerance.type": "allergy-intolerance-type",
    "AllergyIntolerance.verificationStatus": "allergyintolerance-verification",
    "AllergyIntoleranceReaction.severity": "reaction-event-severity",
    "Appointment.status": "appointmentstatus",
    "AppointmentParticipant.required": "participantrequired",
    "AppointmentParticipant.status": "participationstatus",
    "AppointmentResponse.participantStatus": "participationstatus",
    "AuditEvent.action": "audit-event-action",
    "AuditEvent.outcome": "audit-event-outcome",
    "AuditEventAgentNetwork.type": "network-type",
    "BiologicallyDerivedProduct.productCategory": "product-category",
    "BiologicallyDerivedProduct.status": "product-status",
    "BiologicallyDerivedProductStorage.scale": "product-storage-scale",
    "Bundle.type": "bundle-type",
    "BundleEntryRequest.method": "http-verb",
    "BundleEntrySearch.mode": "search-entry-mode",
    "CapabilityStatement.fhirVersion": "FHIR-version",
    "CapabilityStatement.kind": "capability-statement-kind",
    "CapabilityStatement.status": "publication-status",
    "CapabilityStatementDocument.mode": "document-mode",
    "CapabilityStatementMessagingSupportedMessage.mode": "event-capability-mode",
    "CapabilityStatementRest.mode": "restful-capability-mode",
    "CapabilityStatementRestInteraction.code": "system-restful-interaction",
    "CapabilityStatementRestResource.conditionalDelete": "conditional-delete-status",
    "CapabilityStatementRestResource.conditionalRead": "conditional-read-status",
    "CapabilityStatementRestResource.referencePolicy": "reference-handling-policy",
    "CapabilityStatementRestResource.type": "resource-types",
    "CapabilityStatementRestResource.versioning": "versioning-policy",
    "CapabilityStatementRestResourceInteraction.code": "type-restful-interaction",
    "CapabilityStatementRestResourceSearchParam.type": "search-param-type",
    "CarePlan.intent": "care-plan-intent",
    "CarePlan.status": "request-status",
    "CarePlanActivityDetail.kind": "care-plan-activity-kind",
    "CarePlanActivityDetail.status": "care-plan-activity-status",
    "CareTeam.status": "care-team-status",
    "CatalogEntry.status": "publication-status",
    "CatalogEntryRelatedEntry.relationtype": "relation-type",
    "ChargeItem.status": "chargeitem-status",
    "ChargeItemDefinition.status": "publication-status",
    "ChargeItemDefinitionPropertyGroupPriceComponent.type": "invoice-priceComponentType",
    "Claim.status": "fm-status",
    "Claim.use": "claim-use",
    "ClaimResponse.outcome": "remittance-outcome",
    "ClaimResponse.status": "fm-status",
    "ClaimResponse.use": "claim-use",
    "ClaimResponseProcessNote.type": "note-type",
    "ClinicalImpression.status": "clinicalimpression-status",
    "CodeSystem.content": "codesystem-content-mode",
    "CodeSystem.hierarchyMeaning": "codesystem-hierarchy-meaning",
    "CodeSystem.status": "publication-status",
    "CodeSystemFilter.operator": "filter-operator",
    "CodeSystemProperty.type": "concept-property-type",
    "Communication.priority": "request-priority",
    "Communication.status": "event-status",
    "CommunicationRequest.priority": "request-priority",
    "CommunicationRequest.status": "request-status",
    "CompartmentDefinition.code": "compartment-type",
    "CompartmentDefinition.status": "publication-status",
    "CompartmentDefinitionResource.code": "resource-types",
    "Composition.confidentiality": "v3-ConfidentialityClassification",
    "Composition.status": "composition-status",
    "CompositionAttester.mode": "composition-attestation-mode",
    "CompositionRelatesTo.code": "document-relationship-type",
    "CompositionSection.mode": "list-mode",
    "ConceptMap.status": "publication-status",
    "ConceptMapGroupElementTarget.equivalence": "concept-map-equivalence",
    "ConceptMapGroupUnmapped.mode": "conceptmap-unmapped-mode",
    "Condition.clinicalStatus": "condition-clinical",
    "Condition.verificationStatus": "condition-ver-status",
    "Consent.status": "consent-state-codes",
    "ConsentProvision.type": "consent-provision-type",
    "ConsentProvisionData.meaning": "consent-data-meaning",
    "ContactPoint.system": "contact-point-system",
    "ContactPoint.use": "contact-point-use",
    "Contract.status": "contract-status",
    "ContractContentDefinition.publicationStatus": "contract-publicationstatus",
    "Contributor.type": "contributor-type",
    "Count.comparator": "quantity-comparator",
    "Coverage.status": "fm-status",
    "CoverageEligibilityRequest.purpose": "eligibilityrequest-purpose",
    "CoverageEligibilityRequest.status": "fm-status",
    "CoverageEligibilityResponse.outcome": "remittance-outcome",
    "CoverageEligibilityResponse.purpose": "eligibilityresponse-purpose",
    "CoverageEligibilityResponse.status": "fm-status",
    "DataRequirement.type": "all-types",
    "DataRequirementSort.direction": "sort-direction",
    "DetectedIssue.severity": "detectedissue-severity",
    "DetectedIssue.status": "observation-status",
    "Device.status": "device-status",
    "DeviceDefinitionDeviceName.type": "device-nametype",
    "DeviceDeviceName.type": "device-nametype",
    "DeviceMetric.category": "metric-category",
    "DeviceMetric.color": "metric-color",
    "DeviceMetric.operationalStatus": "metric-operational-status",
    "DeviceMetricCalibration.state": "metric-calibration-state",
    "DeviceMetricCalibration.type": "metric-calibration-type",
    "DeviceRequest.intent": "request-intent",
    "DeviceRequest.priority": "request-priority",
    "DeviceRequest.status": "request-status",
    "DeviceUdiCarrier.entryType": "udi-entry-type",
    "DeviceUseStatement.status": "device-statement-status",
    "DiagnosticReport.status": "diagnostic-report-status",
    "Distance.comparator": "quantity-comparator",
    "DocumentManifest.status": "document-reference-status",
    "DocumentReference.docStatus": "composition-status",
    "DocumentReference.status": "document-reference-status",
    "DocumentReferenceRelatesTo.code": "document-relationship-type",
    "Duration.comparator": "quantity-comparator",
    "ElementDefinition.representation": "property-representation",
    "ElementDefinitionBinding.strength": "binding-strength",
    "ElementDefinitionConstraint.severity": "constraint-severity",
    "ElementDefinitionSlicing.rules": "resource-slicing-rules",
    "ElementDefinitionSlicingDiscriminator.type": "discriminator-type",
    "ElementDefinitionType.aggregation": "resource-aggregation-mode",
    "ElementDefinitionType.versioning": "reference-version-rules",
    "Encounter.status": "encounter-status",
    "EncounterLocation.status": "encounter-location-status",
    "EncounterStatusHistory.status": "encounter-status",
    "Endpoint.status": "endpoint-status",
    "EnrollmentRequest.status": "fm-status",
    "EnrollmentResponse.outcome": "remittance-outcome",
    "EnrollmentResponse.status": "fm-status",
    "EpisodeOfCare.status": "episode-of-care-status",
    "EpisodeOfCareStatusHistory.status": "episode-of-care-status",
    "EventDefinition.status": "publication-status",
    "ExampleScenario.status": "publication-status",
    "ExampleScenarioActor.type": "examplescenario-actor-type",
    "ExampleScenarioInstance.resourceType": "resource-types",
    "ExplanationOfBenefit.outcome": "remittance-outcome",
    "ExplanationOfBenefit.status": "explanationofbenefit-status",
    "ExplanationOfBenefit.use": "claim-use",
    "ExplanationOfBenefitProcessNote.type": "note-type",
    "FamilyMemberHistory.status": "history-status",
    "Flag.status": "flag-status",
    "Goal.lifecycleStatus": "goal-status",
    "GraphDefinition.start": "resource-types",
    "GraphDefinition.status": "publication-status",
    "GraphDefinitionLinkTarget.type": "resource-types",
    "GraphDefinitionLinkTargetCompartment.code": "compartment-type",
    "GraphDefinitionLinkTargetCompartment.rule": "graph-compartment-rule",
    "GraphDefinitionLinkTargetCompartment.use": "graph-compartment-use",
    "Group.type": "group-type",
    "GuidanceResponse.status": "guidance-response-status",
    "HealthcareServiceAvailableTime.daysOfWeek": "days-of-week",
    "HumanName.use": "name-use",
    "Identifier.use": "identifier-use",
    "ImagingStudy.status": "imagingstudy-status",
    "Immunization.status": "immunization-status",
    "ImmunizationEvaluation.status": "immunization-evaluation-status",
    "ImplementationGuide.fhirVersion": "FHIR-version",
    "ImplementationGuide.license": "spdx-license",
    "ImplementationGuide.status": "publication-status",
    "ImplementationGuideDefinitionPage.generation": "guide-page-generation",
    "ImplementationGuideDefinitionParameter.code": "guide-parameter-code",
    "ImplementationGuideDefinitionResource.fhirVersion": "FHIR-version",
    "ImplementationGuideGlobal.type": "resource-types",
    "InsurancePlan.status": "publication-status",
    "InsurancePlanPlanSpecificCostBenefitCost.applicability": "insuranceplan-applicability",
    "Invoice.status": "invoice-status",
    "InvoiceLineItemPriceComponent.type": "invoice-priceComponentType",
    "Library.status": "publication-status",
    "LinkageItem.type": "linkage-type",
    "List.mode": "list-mode",
    "List.status": "list-status",
    "Location.mode": "location-mode",
    "Location.status": "location-status",
    "LocationHoursOfOperation.daysOfWeek": "days-of-week",
    "Measure.improvementNotation": "measure-improvement-notation",
    "Measure.status": "publication-status",
    "MeasureReport.improvementNotation": "measure-improvement-notation",
    "MeasureReport.status": "measure-report-status",
    "MeasureReport.type": "measure-report-type",
    "Media.status": "event-status",
    "Medication.status": "medication-status",
    "MedicationAdministration.status": "medication-admin-status",
    "MedicationDispense.status": "medicationdispense-status",
    "MedicationKnowledge.status": "medicationknowledge-status",
    "MedicationRequest.intent": "medicationrequest-intent",
    "MedicationRequest.priority": "request-priority",
    "MedicationRequest.status": "medicationrequest-status",
    "MedicationStatement.status": "medication-statement-status",
    "MessageDefinition.category": "message-significance-category",
    "MessageDefinition.responseRequired": "messageheader-response-request",
    "MessageDefinition.status": "publication-status",
    "MessageDefinitionFocus.code": "resource-types",
    "MessageHeaderResponse.code": "response-code",
    "MolecularSequence.type": "sequence-type",
    "MolecularSequenceQuality.type": "quality-type",
    "MolecularSequenceReferenceSeq.orientation": "orientation-type",
    "MolecularSequenceReferenceSeq.strand": "strand-type",
    "MolecularSequenceRepository.type": "repository-type",
    "NamingSystem.kind": "namingsystem-type",
    "NamingSystem.status": "publication-status",
    "NamingSystemUniqueId.type": "namingsystem-identifier-type",
    "Narrative.status": "narrative-status",
    "NutritionOrder.intent": "request-intent",
    "NutritionOrder.status": "request-status",
    "Observation.status": "observation-status",
    "ObservationDefinition.permittedDataType": "permitted-data-type",
    "ObservationDefinitionQualifiedInterval.category": "observation-range-category",
    "ObservationDefinitionQualifiedInterval.gender": "administrative-gender",
    "OperationDefinition.kind": "operation-kind",
    "OperationDefinition.resource": "resource-types",
    "OperationDefinition.status": "publication-status",
    "OperationDefinitionParameter.searchType": "search-param-type",
    "OperationDefinitionParameter.type": "all-types",
    "OperationDefinitionParameter.use": "operation-parameter-use",
    "OperationDefinitionParameterBinding.strength": "binding-strength",
    "OperationOutcomeIssue.code": "issue-type",
    "OperationOutcomeIssue.severity": "issue-severity",
    "ParameterDefinition.type": "all-types",
    "ParameterDefinition.use": "operation-parameter-use",
    "Patient.gender": "administrative-gender",
    "PatientContact.gender": "administrative-gender",
    "PatientLink.type": "link-type",
    "PaymentNotice.status": "fm-status",
    "PaymentReconciliation.outcome": "remittance-outcome",
    "PaymentReconciliation.status": "fm-status",
    "PaymentReconciliationProcessNote.type": "note-type",
    "Person.gender": "administrative-gender",
    "PersonLink.assurance": "identity-assuranceLevel",
    "PlanDefinition.status": "publication-status",
    "PlanDefinitionAction.cardinalityBehavior": "action-cardinality-behavior",
    "PlanDefinitionAction.groupingBehavior": "action-grouping-behavior",
    "PlanDefinitionAction.precheckBehavior": "action-precheck-behavior",
    "PlanDefinitionAction.priority": "request-priority",
    "PlanDefinitionAction.requiredBehavior": "action-required-behavior",
    "PlanDefinitionAction.selectionBehavior": "action-selection-behavior",
    "PlanDefinitionActionCondition.kind": "action-condition-kind",
    "PlanDefinitionActionParticipant.type": "action-participant-type",
    "PlanDefinitionActionRelatedAction.relationship": "action-relationship-type",
    "Practitioner.gender": "administrative-gender",
    "PractitionerRoleAvailableTime.daysOfWeek": "days-of-week",
    "Procedure.status": "event-status",
    "ProvenanceEntity.role": "provenance-entity-role",
    "Quantity.comparator": "quantity-comparator",
    "Questionnaire.status": "publication-status",
    "Questionnaire.subjectType": "resource-types",
    "QuestionnaireItem.enableBehavior": "questionnaire-enable-behavior",
    "QuestionnaireItem.type": "item-type",
    "QuestionnaireItemEnableWhen.operator": "questionnaire-enable-operator",
    "QuestionnaireResponse.status": "questionnaire-answers-status",
    "RelatedArtifact.type": "related-artifact-type",
    "RelatedPerson.gender": "administrative-gender",
    "RequestGroup.intent": "request-intent",
    "RequestGroup.priority": "request-priority",
    "RequestGroup.status": "request-status",
    "RequestGroupAction.cardinalityBehavior": "action-cardinality-behavior",
    "RequestGroupAction.groupingBehavior": "action-grouping-behavior",
    "RequestGroupAction.precheckBehavior": "action-precheck-behavior",
    "RequestGroupAction.priority": "request-priority",
    "RequestGroupAction.requiredBehavior": "action-required-behavior",
    "RequestGroupAction.selectionBehavior": "action-selection-behavior",
    "RequestGroupActionCondition.kind": "action-condition-kind",
    "RequestGroupActionRelatedAction.relationship": "action-relationship-type",
    "ResearchDefinition.status": "publication-status",
    "ResearchElementDefinition.status": "publication-status",
    "ResearchElementDefinition.type": "research-element-type",
    "ResearchElementDefinition.variableType": "variable-type",
    "ResearchElementDefinitionCharacteristic.participantEffectiveGroupMeasure": "group-measure",
    "ResearchElementDefinitionCharacteristic.studyEffectiveGroupMeasure": "group-measure",
    "ResearchStudy.status": "research-study-status",
    "ResearchSubject.status": "research-subject-status",
    "RiskAssessment.status": "observation-status",
    "SearchParameter.base": "resource-types",
    "SearchParameter.comparator": "search-comparator",
    "SearchParameter.modifier": "search-modifier-code",
    "SearchParameter.status": "publication-status",
    "SearchParameter.target": "resource-types",
    "SearchParameter.type": "search-param-type",
    "SearchParameter.xpathUsage": "search-xpath-usage",
    "ServiceRequest.intent": "request-intent",
    "ServiceRequest.priority": "request-priority",
    "ServiceRequest.status": "request-status",
    "Slot.status": "slotstatus",
    "Specimen.status": "specimen-status",
    "SpecimenDefinitionTypeTested.preference": "specimen-contained-preference",
    "StructureDefinition.derivation": "type-derivation-rule",
    "StructureDefinition.fhirVersion": "FHIR-version",
    "StructureDefinition.kind": "structure-definition-kind",
    "StructureDefinition.status": "publication-status",
    "StructureDefinitionContext.type": "extension-context-type",
    "StructureMap.status": "publication-status",
    "StructureMapGroup.typeMode": "map-group-type-mode",
    "StructureMapGroupInput.mode": "map-input-mode",
    "StructureMapGroupRuleSource.listMode": "map-source-list-mode",
    "StructureMapGroupRuleTarget.contextType": "map-context-type",
    "StructureMapGroupRuleTarget.listMode": "map-target-list-mode",
    "StructureMapGroupRuleTarget.transform": "map-transform",
    "StructureMapStructure.mode": "map-model-mode",
    "Subscription.status": "subscription-status",
    "SubscriptionChannel.type": "subscription-channel-type",
    "Substance.status": "substance-status",
    "SupplyDelivery.status": "supplydelivery-status",
    "SupplyDelivery.type": "supplydelivery-type",
    "SupplyRequest.priority": "request-priority",
    "SupplyRequest.status": "supplyrequest-status",
    "Task.intent": "task-intent",
    "Task.priority": "request-priority",
    "Task.status": "task-status",
    "TerminologyCapabilities.codeSearch": "code-search-support",
    "TerminologyCapabilities.kind": "capability-statement-kind",
    "TerminologyCapabilities.status": "publication-status",
    "TestReport.result": "report-result-codes",
    "TestReport.status": "report-status-codes",
    "TestReportParticipant.type": "report-participant-type",
    "TestReportSetupActionAssert.result": "report-action-result-codes",
    "TestReportSetupActionOperation.result": "report-action-result-codes",
    "TestScript.status": "publication-status",
    "TestScriptSetupActionAssert.direction": "assert-direction-codes",
    "TestScriptSetupActionAssert.operator": "assert-operator-codes",
    "TestScriptSetupActionAssert.requestMethod": "http-operations",
    "TestScriptSetupActionAssert.resource": "defined-types",
    "TestScriptSetupActionAssert.response": "assert-response-code-types",
    "TestScriptSetupActionOperation.method": "http-operations",
    "TestScriptSetupActionOperation.resource": "defined-types",
    "TimingRepeat.dayOfWeek": "days-of-week",
    "TimingRepeat.durationUnit": "units-of-time",
    "TimingRepeat.periodUnit": "units-of-time",
    "TimingRepeat.when": "event-timing",
    "TriggerDefinition.type": "trigger-type",
    "ValueSet.status": "publication-status",
    "ValueSetComposeIncludeFilter.op": "filter-operator",
    "VerificationResult.status": "verificationresult-status",
    "VisionPrescription.status": "fm-status",
    "VisionPrescriptionLensSpecification.eye": "vision-eye-codes",
    "VisionPrescriptionLensSpecificationPrism.base": "vision-base-codes",
}

TABLE_TYPES: dict[str, dict[str, tuple[str, bool, bool, str | None, str | None]]] = {
    "EffectEvidenceSynthesis": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "url": ("uri", False, False, None, None),
        "identifier": ("Identifier", True, False, None, None),
        "version": ("string", False, False, None, None),
        "name": ("string", False, False, None, None),
        "title": ("string", False, False, None, None),
        "status": ("code", False, True, None, "publication-status"),
        "date": ("dateTime", False, False, None, None),
        "publisher": ("string", False, False, None, None),
        "contact": ("ContactDetail", True, False, None, None),
        "description": ("markdown", False, False, None, None),
        "note": ("Annotation", True, False, None, None),
        "useContext": ("UsageContext", True, False, None, None),
        "jurisdiction": ("CodeableConcept", True, False, None, None),
        "copyright": ("markdown", False, False, None, None),
        "approvalDate": ("date", False, False, None, None),
        "lastReviewDate": ("date", False, False, None, None),
        "effectivePeriod": ("Period", False, False, None, None),
        "topic": ("CodeableConcept", True, False, None, None),
        "author": ("ContactDetail", True, False, None, None),
        "editor": ("ContactDetail", True, False, None, None),
        "reviewer": ("ContactDetail", True, False, None, None),
        "endorser": ("ContactDetail", True, False, None, None),
        "relatedArtifact": ("RelatedArtifact", True, False, None, None),
        "synthesisType": ("CodeableConcept", False, False, None, None),
        "studyType": ("CodeableConcept", False, False, None, None),
        "population": ("Reference", False, True, None, None),
        "exposure": ("Reference", False, True, None, None),
        "exposureAlternative": ("Reference", False, True, None, None),
        "outcome": ("Reference", False, True, None, None),
        "sampleSize": ("EffectEvidenceSynthesis.sampleSize", False, False, None, None),
        "resultsByExposure": ("EffectEvidenceSynthesis.resultsByExposure", True, False, None, None),
        "effectEstimate": ("EffectEvidenceSynthesis.effectEstimate", True, False, None, None),
        "certainty": ("EffectEvidenceSynthesis.certainty", True, False, None, None),
    },
    "EffectEvidenceSynthesis.certainty": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "rating": ("CodeableConcept", True, False, None, None),
        "note": ("Annotation", True, False, None, None),
        "certaintySubcomponent": ("EffectEvidenceSynthesis.certainty.certaintySubcomponent", True, False, None, None),
    },
    "EffectEvidenceSynthesis.certainty.certaintySubcomponent": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "rating": ("CodeableConcept", True, False, None, None),
        "note": ("Annotation", True, False, None, None),
    },
    "EffectEvidenceSynthesis.effectEstimate": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "description": ("string", False, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "variantState": ("CodeableConcept", False, False, None, None),
        "value": ("decimal", False, False, None, None),
        "unitOfMeasure": ("CodeableConcept", False, False, None, None),
        "precisionEstimate": ("EffectEvidenceSynthesis.effectEstimate.precisionEstimate", True, False, None, None),
    },
    "EffectEvidenceSynthesis.effectEstimate.precisionEstimate": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "level": ("decimal", False, False, None, None),
        "from": ("decimal", False, False, None, None),
        "to": ("decimal", False, False, None, None),
    },
    "EffectEvidenceSynthesis.resultsByExposure": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "description": ("string", False, False, None, None),
        "exposureState": ("code", False, False, None, "exposure-state"),
        "variantState": ("CodeableConcept", False, False, None, None),
        "riskEvidenceSynthesis": ("Reference", False, True, None, None),
    },
    "EffectEvidenceSynthesis.sampleSize": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "description": ("string", False, False, None, None),
        "numberOfStudies": ("integer", False, False, None, None),
        "numberOfParticipants": ("integer", False, False, None, None),
    },
    "Evidence": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "url": ("uri", False, False, None, None),
        "identifier": ("Identifier", True, False, None, None),
        "version": ("string", False, False, None, None),
        "name": ("string", False, False, None, None),
        "title": ("string", False, False, None, None),
        "shortTitle": ("string", False, False, None, None),
        "subtitle": ("string", False, False, None, None),
        "status": ("code", False, True, None, "publication-status"),
        "date": ("dateTime", False, False, None, None),
        "publisher": ("string", False, False, None, None),
        "contact": ("ContactDetail", True, False, None, None),
        "description": ("markdown", False, False, None, None),
        "note": ("Annotation", True, False, None, None),
        "useContext": ("UsageContext", True, False, None, None),
        "jurisdiction": ("CodeableConcept", True, False, None, None),
        "copyright": ("markdown", False, False, None, None),
        "approvalDate": ("date", False, False, None, None),
        "lastReviewDate": ("date", False, False, None, None),
        "effectivePeriod": ("Period", False, False, None, None),
        "topic": ("CodeableConcept", True, False, None, None),
        "author": ("ContactDetail", True, False, None, None),
        "editor": ("ContactDetail", True, False, None, None),
        "reviewer": ("ContactDetail", True, False, None, None),
        "endorser": ("ContactDetail", True, False, None, None),
        "relatedArtifact": ("RelatedArtifact", True, False, None, None),
        "exposureBackground": ("Reference", False, True, None, None),
        "exposureVariant": ("Reference", True, False, None, None),
        "outcome": ("Reference", True, False, None, None),
    },
    "EvidenceVariable": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "url": ("uri", False, False, None, None),
        "identifier": ("Identifier", True, False, None, None),
        "version": ("string", False, False, None, None),
        "name": ("string", False, False, None, None),
        "title": ("string", False, False, None, None),
        "shortTitle": ("string", False, False, None, None),
        "subtitle": ("string", False, False, None, None),
        "status": ("code", False, True, None, "publication-status"),
        "date": ("dateTime", False, False, None, None),
        "publisher": ("string", False, False, None, None),
        "contact": ("ContactDetail", True, False, None, None),
        "description": ("markdown", False, False, None, None),
        "note": ("Annotation", True, False, None, None),
        "useContext": ("UsageContext", True, False, None, None),
        "jurisdiction": ("CodeableConcept", True, False, None, None),
        "copyright": ("markdown", False, False, None, None),
        "approvalDate": ("date", False, False, None, None),
        "lastReviewDate": ("date", False, False, None, None),
        "effectivePeriod": ("Period", False, False, None, None),
        "topic": ("CodeableConcept", True, False, None, None),
        "author": ("ContactDetail", True, False, None, None),
        "editor": ("ContactDetail", True, False, None, None),
        "reviewer": ("ContactDetail", True, False, None, None),
        "endorser": ("ContactDetail", True, False, None, None),
        "relatedArtifact": ("RelatedArtifact", True, False, None, None),
        "type": ("code", False, False, None, "variable-type"),
        "characteristic": ("EvidenceVariable.characteristic", True, True, None, None),
    },
    "EvidenceVariable.characteristic": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "description": ("string", False, False, None, None),
        "definitionReference": ("Reference", False, True, "definition[x]", None),
        "definitionCanonical": ("canonical", False, True, "definition[x]", None),
        "definitionCodeableConcept": ("CodeableConcept", False, True, "definition[x]", None),
        "definitionExpression": ("Expression", False, True, "definition[x]", None),
        "definitionDataRequirement": ("DataRequirement", False, True, "definition[x]", None),
        "definitionTriggerDefinition": ("TriggerDefinition", False, True, "definition[x]", None),
        "usageContext": ("UsageContext", True, False, None, None),
        "exclude": ("boolean", False, False, None, None),
        "participantEffectiveDateTime": ("dateTime", False, False, "participantEffective[x]", None),
        "participantEffectivePeriod": ("Period", False, False, "participantEffective[x]", None),
        "participantEffectiveDuration": ("Duration", False, False, "participantEffective[x]", None),
        "participantEffectiveTiming": ("Timing", False, False, "participantEffective[x]", None),
        "timeFromStart": ("Duration", False, False, None, None),
        "groupMeasure": ("code", False, False, None, "group-measure"),
    },
    "MedicinalProduct": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "identifier": ("Identifier", True, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "domain": ("Coding", False, False, None, None),
        "combinedPharmaceuticalDoseForm": ("CodeableConcept", False, False, None, None),
        "legalStatusOfSupply": ("CodeableConcept", False, False, None, None),
        "additionalMonitoringIndicator": ("CodeableConcept", False, False, None, None),
        "specialMeasures": ("string", True, False, None, None),
        "paediatricUseIndicator": ("CodeableConcept", False, False, None, None),
        "productClassification": ("CodeableConcept", True, False, None, None),
        "marketingStatus": ("MarketingStatus", True, False, None, None),
        "pharmaceuticalProduct": ("Reference", True, False, None, None),
        "packagedMedicinalProduct": ("Reference", True, False, None, None),
        "attachedDocument": ("Reference", True, False, None, None),
        "masterFile": ("Reference", True, False, None, None),
        "contact": ("Reference", True, False, None, None),
        "clinicalTrial": ("Reference", True, False, None, None),
        "name": ("MedicinalProduct.name", True, True, None, None),
        "crossReference": ("Identifier", True, False, None, None),
        "manufacturingBusinessOperation": ("MedicinalProduct.manufacturingBusinessOperation", True, False, None, None),
        "specialDesignation": ("MedicinalProduct.specialDesignation", True, False, None, None),
    },
    "MedicinalProduct.manufacturingBusinessOperation": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "operationType": ("CodeableConcept", False, False, None, None),
        "authorisationReferenceNumber": ("Identifier", False, False, None, None),
        "effectiveDate": ("dateTime", False, False, None, None),
        "confidentialityIndicator": ("CodeableConcept", False, False, None, None),
        "manufacturer": ("Reference", True, False, None, None),
        "regulator": ("Reference", False, False, None, None),
    },
    "MedicinalProduct.name": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "productName": ("string", False, True, None, None),
        "namePart": ("MedicinalProduct.name.namePart", True, False, None, None),
        "countryLanguage": ("MedicinalProduct.name.countryLanguage", True, False, None, None),
    },
    "MedicinalProduct.name.countryLanguage": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "country": ("CodeableConcept", False, True, None, None),
        "jurisdiction": ("CodeableConcept", False, False, None, None),
        "language": ("CodeableConcept", False, True, None, None),
    },
    "MedicinalProduct.name.namePart": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "part": ("string", False, True, None, None),
        "type": ("Coding", False, True, None, None),
    },
    "MedicinalProduct.specialDesignation": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "identifier": ("Identifier", True, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "intendedUse": ("CodeableConcept", False, False, None, None),
        "indicationCodeableConcept": ("CodeableConcept", False, False, "indication[x]", None),
        "indicationReference": ("Reference", False, False, "indication[x]", None),
        "status": ("CodeableConcept", False, False, None, None),
        "date": ("dateTime", False, False, None, None),
        "species": ("CodeableConcept", False, False, None, None),
    },
    "MedicinalProductAuthorization": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "identifier": ("Identifier", True, False, None, None),
        "subject": ("Reference", False, False, None, None),
        "country": ("CodeableConcept", True, False, None, None),
        "jurisdiction": ("CodeableConcept", True, False, None, None),
        "status": ("CodeableConcept", False, False, None, None),
        "statusDate": ("dateTime", False, False, None, None),
        "restoreDate": ("dateTime", False, False, None, None),
        "validityPeriod": ("Period", False, False, None, None),
        "dataExclusivityPeriod": ("Period", False, False, None, None),
        "dateOfFirstAuthorization": ("dateTime", False, False, None, None),
        "internationalBirthDate": ("dateTime", False, False, None, None),
        "legalBasis": ("CodeableConcept", False, False, None, None),
        "jurisdictionalAuthorization": (
            "MedicinalProductAuthorization.jurisdictionalAuthorization",
            True,
            False,
            None,
            None,
        ),
        "holder": ("Reference", False, False, None, None),
        "regulator": ("Reference", False, False, None, None),
        "procedure": ("MedicinalProductAuthorization.procedure", False, False, None, None),
    },
    "MedicinalProductAuthorization.jurisdictionalAuthorization": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "identifier": ("Identifier", True, False, None, None),
        "country": ("CodeableConcept", False, False, None, None),
        "jurisdiction": ("CodeableConcept", True, False, None, None),
        "legalStatusOfSupply": ("CodeableConcept", False, False, None, None),
        "validityPeriod": ("Period", False, False, None, None),
    },
    "MedicinalProductAuthorization.procedure": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "identifier": ("Identifier", False, False, None, None),
        "type": ("CodeableConcept", False, True, None, None),
        "datePeriod": ("Period", False, False, "date[x]", None),
        "dateDateTime": ("dateTime", False, False, "date[x]", None),
        "application": ("MedicinalProductAuthorization.procedure", True, False, None, None),
    },
    "MedicinalProductContraindication": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "subject": ("Reference", True, False, None, None),
        "disease": ("CodeableConcept", False, False, None, None),
        "diseaseStatus": ("CodeableConcept", False, False, None, None),
        "comorbidity": ("CodeableConcept", True, False, None, None),
        "therapeuticIndication": ("Reference", True, False, None, None),
        "otherTherapy": ("MedicinalProductContraindication.otherTherapy", True, False, None, None),
        "population": ("Population", True, False, None, None),
    },
    "MedicinalProductContraindication.otherTherapy": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "therapyRelationshipType": ("CodeableConcept", False, True, None, None),
        "medicationCodeableConcept": ("CodeableConcept", False, True, "medication[x]", None),
        "medicationReference": ("Reference", False, True, "medication[x]", None),
    },
    "MedicinalProductIndication": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "subject": ("Reference", True, False, None, None),
        "diseaseSymptomProcedure": ("CodeableConcept", False, False, None, None),
        "diseaseStatus": ("CodeableConcept", False, False, None, None),
        "comorbidity": ("CodeableConcept", True, False, None, None),
        "intendedEffect": ("CodeableConcept", False, False, None, None),
        "duration": ("Quantity", False, False, None, None),
        "otherTherapy": ("MedicinalProductIndication.otherTherapy", True, False, None, None),
        "undesirableEffect": ("Reference", True, False, None, None),
        "population": ("Population", True, False, None, None),
    },
    "MedicinalProductIndication.otherTherapy": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "therapyRelationshipType": ("CodeableConcept", False, True, None, None),
        "medicationCodeableConcept": ("CodeableConcept", False, True, "medication[x]", None),
        "medicationReference": ("Reference", False, True, "medication[x]", None),
    },
    "MedicinalProductIngredient": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "identifier": ("Identifier", False, False, None, None),
        "role": ("CodeableConcept", False, True, None, None),
        "allergenicIndicator": ("boolean", False, False, None, None),
        "manufacturer": ("Reference", True, False, None, None),
        "specifiedSubstance": ("MedicinalProductIngredient.specifiedSubstance", True, False, None, None),
        "substance": ("MedicinalProductIngredient.substance", False, False, None, None),
    },
    "MedicinalProductIngredient.specifiedSubstance": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "code": ("CodeableConcept", False, True, None, None),
        "group": ("CodeableConcept", False, True, None, None),
        "confidentiality": ("CodeableConcept", False, False, None, None),
        "strength": ("MedicinalProductIngredient.specifiedSubstance.strength", True, False, None, None),
    },
    "MedicinalProductIngredient.specifiedSubstance.strength": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "presentation": ("Ratio", False, True, None, None),
        "presentationLowLimit": ("Ratio", False, False, None, None),
        "concentration": ("Ratio", False, False, None, None),
        "concentrationLowLimit": ("Ratio", False, False, None, None),
        "measurementPoint": ("string", False, False, None, None),
        "country": ("CodeableConcept", True, False, None, None),
        "referenceStrength": (
            "MedicinalProductIngredient.specifiedSubstance.strength.referenceStrength",
            True,
            False,
            None,
            None,
        ),
    },
    "MedicinalProductIngredient.specifiedSubstance.strength.referenceStrength": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "substance": ("CodeableConcept", False, False, None, None),
        "strength": ("Ratio", False, True, None, None),
        "strengthLowLimit": ("Ratio", False, False, None, None),
        "measurementPoint": ("string", False, False, None, None),
        "country": ("CodeableConcept", True, False, None, None),
    },
    "MedicinalProductIngredient.substance": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "code": ("CodeableConcept", False, True, None, None),
        "strength": ("MedicinalProductIngredient.specifiedSubstance.strength", True, False, None, None),
    },
    "MedicinalProductInteraction": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "subject": ("Reference", True, False, None, None),
        "description": ("string", False, False, None, None),
        "interactant": ("MedicinalProductInteraction.interactant", True, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "effect": ("CodeableConcept", False, False, None, None),
        "incidence": ("CodeableConcept", False, False, None, None),
        "management": ("CodeableConcept", False, False, None, None),
    },
    "MedicinalProductInteraction.interactant": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "itemReference": ("Reference", False, True, "item[x]", None),
        "itemCodeableConcept": ("CodeableConcept", False, True, "item[x]", None),
    },
    "MedicinalProductManufactured": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "manufacturedDoseForm": ("CodeableConcept", False, True, None, None),
        "unitOfPresentation": ("CodeableConcept", False, False, None, None),
        "quantity": ("Quantity", False, True, None, None),
        "manufacturer": ("Reference", True, False, None, None),
        "ingredient": ("Reference", True, False, None, None),
        "physicalCharacteristics": ("ProdCharacteristic", False, False, None, None),
        "otherCharacteristics": ("CodeableConcept", True, False, None, None),
    },
    "MedicinalProductPackaged": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "identifier": ("Identifier", True, False, None, None),
        "subject": ("Reference", True, False, None, None),
        "description": ("string", False, False, None, None),
        "legalStatusOfSupply": ("CodeableConcept", False, False, None, None),
        "marketingStatus": ("MarketingStatus", True, False, None, None),
        "marketingAuthorization": ("Reference", False, False, None, None),
        "manufacturer": ("Reference", True, False, None, None),
        "batchIdentifier": ("MedicinalProductPackaged.batchIdentifier", True, False, None, None),
        "packageItem": ("MedicinalProductPackaged.packageItem", True, True, None, None),
    },
    "MedicinalProductPackaged.batchIdentifier": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "outerPackaging": ("Identifier", False, True, None, None),
        "immediatePackaging": ("Identifier", False, False, None, None),
    },
    "MedicinalProductPackaged.packageItem": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "identifier": ("Identifier", True, False, None, None),
        "type": ("CodeableConcept", False, True, None, None),
        "quantity": ("Quantity", False, True, None, None),
        "material": ("CodeableConcept", True, False, None, None),
        "alternateMaterial": ("CodeableConcept", True, False, None, None),
        "device": ("Reference", True, False, None, None),
        "manufacturedItem": ("Reference", True, False, None, None),
        "packageItem": ("MedicinalProductPackaged.packageItem", True, False, None, None),
        "physicalCharacteristics": ("ProdCharacteristic", False, False, None, None),
        "otherCharacteristics": ("CodeableConcept", True, False, None, None),
        "shelfLifeStorage": ("ProductShelfLife", True, False, None, None),
        "manufacturer": ("Reference", True, False, None, None),
    },
    "MedicinalProductPharmaceutical": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "identifier": ("Identifier", True, False, None, None),
        "administrableDoseForm": ("CodeableConcept", False, True, None, None),
        "unitOfPresentation": ("CodeableConcept", False, False, None, None),
        "ingredient": ("Reference", True, False, None, None),
        "device": ("Reference", True, False, None, None),
        "characteristics": ("MedicinalProductPharmaceutical.characteristics", True, False, None, None),
        "routeOfAdministration": ("MedicinalProductPharmaceutical.routeOfAdministration", True, True, None, None),
    },
    "MedicinalProductPharmaceutical.characteristics": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "code": ("CodeableConcept", False, True, None, None),
        "status": ("CodeableConcept", False, False, None, None),
    },
    "MedicinalProductPharmaceutical.routeOfAdministration": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "code": ("CodeableConcept", False, True, None, None),
        "firstDose": ("Quantity", False, False, None, None),
        "maxSingleDose": ("Quantity", False, False, None, None),
        "maxDosePerDay": ("Quantity", False, False, None, None),
        "maxDosePerTreatmentPeriod": ("Ratio", False, False, None, None),
        "maxTreatmentPeriod": ("Duration", False, False, None, None),
        "targetSpecies": (
            "MedicinalProductPharmaceutical.routeOfAdministration.targetSpecies",
            True,
            False,
            None,
            None,
        ),
    },
    "MedicinalProductPharmaceutical.routeOfAdministration.targetSpecies": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "code": ("CodeableConcept", False, True, None, None),
        "withdrawalPeriod": (
            "MedicinalProductPharmaceutical.routeOfAdministration.targetSpecies.withdrawalPeriod",
            True,
            False,
            None,
            None,
        ),
    },
    "MedicinalProductPharmaceutical.routeOfAdministration.targetSpecies.withdrawalPeriod": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "tissue": ("CodeableConcept", False, True, None, None),
        "value": ("Quantity", False, True, None, None),
        "supportingInformation": ("string", False, False, None, None),
    },
    "MedicinalProductUndesirableEffect": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "subject": ("Reference", True, False, None, None),
        "symptomConditionEffect": ("CodeableConcept", False, False, None, None),
        "classification": ("CodeableConcept", False, False, None, None),
        "frequencyOfOccurrence": ("CodeableConcept", False, False, None, None),
        "population": ("Population", True, False, None, None),
    },
    "RiskEvidenceSynthesis": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "url": ("uri", False, False, None, None),
        "identifier": ("Identifier", True, False, None, None),
        "version": ("string", False, False, None, None),
        "name": ("string", False, False, None, None),
        "title": ("string", False, False, None, None),
        "status": ("code", False, True, None, "publication-status"),
        "date": ("dateTime", False, False, None, None),
        "publisher": ("string", False, False, None, None),
        "contact": ("ContactDetail", True, False, None, None),
        "description": ("markdown", False, False, None, None),
        "note": ("Annotation", True, False, None, None),
        "useContext": ("UsageContext", True, False, None, None),
        "jurisdiction": ("CodeableConcept", True, False, None, None),
        "copyright": ("markdown", False, False, None, None),
        "approvalDate": ("date", False, False, None, None),
        "lastReviewDate": ("date", False, False, None, None),
        "effectivePeriod": ("Period", False, False, None, None),
        "topic": ("CodeableConcept", True, False, None, None),
        "author": ("ContactDetail", True, False, None, None),
        "editor": ("ContactDetail", True, False, None, None),
        "reviewer": ("ContactDetail", True, False, None, None),
        "endorser": ("ContactDetail", True, False, None, None),
        "relatedArtifact": ("RelatedArtifact", True, False, None, None),
        "synthesisType": ("CodeableConcept", False, False, None, None),
        "studyType": ("CodeableConcept", False, False, None, None),
        "population": ("Reference", False, True, None, None),
        "exposure": ("Reference", False, False, None, None),
        "outcome": ("Reference", False, True, None, None),
        "sampleSize": ("RiskEvidenceSynthesis.sampleSize", False, False, None, None),
        "riskEstimate": ("RiskEvidenceSynthesis.riskEstimate", False, False, None, None),
        "certainty": ("RiskEvidenceSynthesis.certainty", True, False, None, None),
    },
    "RiskEvidenceSynthesis.certainty": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "rating": ("CodeableConcept", True, False, None, None),
        "note": ("Annotation", True, False, None, None),
        "certaintySubcomponent": ("RiskEvidenceSynthesis.certainty.certaintySubcomponent", True, False, None, None),
    },
    "RiskEvidenceSynthesis.certainty.certaintySubcomponent": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "rating": ("CodeableConcept", True, False, None, None),
        "note": ("Annotation", True, False, None, None),
    },
    "RiskEvidenceSynthesis.riskEstimate": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "description": ("string", False, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "value": ("decimal", False, False, None, None),
        "unitOfMeasure": ("CodeableConcept", False, False, None, None),
        "denominatorCount": ("integer", False, False, None, None),
        "numeratorCount": ("integer", False, False, None, None),
        "precisionEstimate": ("RiskEvidenceSynthesis.riskEstimate.precisionEstimate", True, False, None, None),
    },
    "RiskEvidenceSynthesis.riskEstimate.precisionEstimate": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "level": ("decimal", False, False, None, None),
        "from": ("decimal", False, False, None, None),
        "to": ("decimal", False, False, None, None),
    },
    "RiskEvidenceSynthesis.sampleSize": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "description": ("string", False, False, None, None),
        "numberOfStudies": ("integer", False, False, None, None),
        "numberOfParticipants": ("integer", False, False, None, None),
    },
    "SubstanceAmount": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "amountQuantity": ("Quantity", False, False, "amount", None),
        "amountRange": ("Range", False, False, "amount", None),
        "amountString": ("string", False, False, "amount", None),
        "amountType": ("CodeableConcept", False, False, None, None),
        "amountText": ("string", False, False, None, None),
        "referenceRange": ("SubstanceAmount.referenceRange", False, False, None, None),
    },
    "SubstanceAmount.referenceRange": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "lowLimit": ("Quantity", False, False, None, None),
        "highLimit": ("Quantity", False, False, None, None),
    },
    "SubstanceNucleicAcid": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "sequenceType": ("CodeableConcept", False, False, None, None),
        "numberOfSubunits": ("integer", False, False, None, None),
        "areaOfHybridisation": ("string", False, False, None, None),
        "oligoNucleotideType": ("CodeableConcept", False, False, None, None),
        "subunit": ("SubstanceNucleicAcid.subunit", True, False, None, None),
    },
    "SubstanceNucleicAcid.subunit": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "subunit": ("integer", False, False, None, None),
        "sequence": ("string", False, False, None, None),
        "length": ("integer", False, False, None, None),
        "sequenceAttachment": ("Attachment", False, False, None, None),
        "fivePrime": ("CodeableConcept", False, False, None, None),
        "threePrime": ("CodeableConcept", False, False, None, None),
        "linkage": ("SubstanceNucleicAcid.subunit.linkage", True, False, None, None),
        "sugar": ("SubstanceNucleicAcid.subunit.sugar", True, False, None, None),
    },
    "SubstanceNucleicAcid.subunit.linkage": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "connectivity": ("string", False, False, None, None),
        "identifier": ("Identifier", False, False, None, None),
        "name": ("string", False, False, None, None),
        "residueSite": ("string", False, False, None, None),
    },
    "SubstanceNucleicAcid.subunit.sugar": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "identifier": ("Identifier", False, False, None, None),
        "name": ("string", False, False, None, None),
        "residueSite": ("string", False, False, None, None),
    },
    "SubstancePolymer": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "class": ("CodeableConcept", False, False, None, None),
        "geometry": ("CodeableConcept", False, False, None, None),
        "copolymerConnectivity": ("CodeableConcept", True, False, None, None),
        "modification": ("string", True, False, None, None),
        "monomerSet": ("SubstancePolymer.monomerSet", True, False, None, None),
        "repeat": ("SubstancePolymer.repeat", True, False, None, None),
    },
    "SubstancePolymer.monomerSet": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "ratioType": ("CodeableConcept", False, False, None, None),
        "startingMaterial": ("SubstancePolymer.monomerSet.startingMaterial", True, False, None, None),
    },
    "SubstancePolymer.monomerSet.startingMaterial": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "material": ("CodeableConcept", False, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "isDefining": ("boolean", False, False, None, None),
        "amount": ("SubstanceAmount", False, False, None, None),
    },
    "SubstancePolymer.repeat": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "numberOfUnits": ("integer", False, False, None, None),
        "averageMolecularFormula": ("string", False, False, None, None),
        "repeatUnitAmountType": ("CodeableConcept", False, False, None, None),
        "repeatUnit": ("SubstancePolymer.repeat.repeatUnit", True, False, None, None),
    },
    "SubstancePolymer.repeat.repeatUnit": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "orientationOfPolymerisation": ("CodeableConcept", False, False, None, None),
        "repeatUnit": ("string", False, False, None, None),
        "amount": ("SubstanceAmount", False, False, None, None),
        "degreeOfPolymerisation": (
            "SubstancePolymer.repeat.repeatUnit.degreeOfPolymerisation",
            True,
            False,
            None,
            None,
        ),
        "structuralRepresentation": (
            "SubstancePolymer.repeat.repeatUnit.structuralRepresentation",
            True,
            False,
            None,
            None,
        ),
    },
    "SubstancePolymer.repeat.repeatUnit.degreeOfPolymerisation": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "degree": ("CodeableConcept", False, False, None, None),
        "amount": ("SubstanceAmount", False, False, None, None),
    },
    "SubstancePolymer.repeat.repeatUnit.structuralRepresentation": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "representation": ("string", False, False, None, None),
        "attachment": ("Attachment", False, False, None, None),
    },
    "SubstanceProtein": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "sequenceType": ("CodeableConcept", False, False, None, None),
        "numberOfSubunits": ("integer", False, False, None, None),
        "disulfideLinkage": ("string", True, False, None, None),
        "subunit": ("SubstanceProtein.subunit", True, False, None, None),
    },
    "SubstanceProtein.subunit": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "subunit": ("integer", False, False, None, None),
        "sequence": ("string", False, False, None, None),
        "length": ("integer", False, False, None, None),
        "sequenceAttachment": ("Attachment", False, False, None, None),
        "nTerminalModificationId": ("Identifier", False, False, None, None),
        "nTerminalModification": ("string", False, False, None, None),
        "cTerminalModificationId": ("Identifier", False, False, None, None),
        "cTerminalModification": ("string", False, False, None, None),
    },
    "SubstanceReferenceInformation": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "comment": ("string", False, False, None, None),
        "gene": ("SubstanceReferenceInformation.gene", True, False, None, None),
        "geneElement": ("SubstanceReferenceInformation.geneElement", True, False, None, None),
        "classification": ("SubstanceReferenceInformation.classification", True, False, None, None),
        "target": ("SubstanceReferenceInformation.target", True, False, None, None),
    },
    "SubstanceReferenceInformation.classification": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "domain": ("CodeableConcept", False, False, None, None),
        "classification": ("CodeableConcept", False, False, None, None),
        "subtype": ("CodeableConcept", True, False, None, None),
        "source": ("Reference", True, False, None, None),
    },
    "SubstanceReferenceInformation.gene": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "geneSequenceOrigin": ("CodeableConcept", False, False, None, None),
        "gene": ("CodeableConcept", False, False, None, None),
        "source": ("Reference", True, False, None, None),
    },
    "SubstanceReferenceInformation.geneElement": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "element": ("Identifier", False, False, None, None),
        "source": ("Reference", True, False, None, None),
    },
    "SubstanceReferenceInformation.target": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "target": ("Identifier", False, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "interaction": ("CodeableConcept", False, False, None, None),
        "organism": ("CodeableConcept", False, False, None, None),
        "organismType": ("CodeableConcept", False, False, None, None),
        "amountQuantity": ("Quantity", False, False, "amount[x]", None),
        "amountRange": ("Range", False, False, "amount[x]", None),
        "amountString": ("string", False, False, "amount[x]", None),
        "amountType": ("CodeableConcept", False, False, None, None),
        "source": ("Reference", True, False, None, None),
    },
    "SubstanceSourceMaterial": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "sourceMaterialClass": ("CodeableConcept", False, False, None, None),
        "sourceMaterialType": ("CodeableConcept", False, False, None, None),
        "sourceMaterialState": ("CodeableConcept", False, False, None, None),
        "organismId": ("Identifier", False, False, None, None),
        "organismName": ("string", False, False, None, None),
        "parentSubstanceId": ("Identifier", True, False, None, None),
        "parentSubstanceName": ("string", True, False, None, None),
        "countryOfOrigin": ("CodeableConcept", True, False, None, None),
        "geographicalLocation": ("string", True, False, None, None),
        "developmentStage": ("CodeableConcept", False, False, None, None),
        "fractionDescription": ("SubstanceSourceMaterial.fractionDescription", True, False, None, None),
        "organism": ("SubstanceSourceMaterial.organism", False, False, None, None),
        "partDescription": ("SubstanceSourceMaterial.partDescription", True, False, None, None),
    },
    "SubstanceSourceMaterial.fractionDescription": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "fraction": ("string", False, False, None, None),
        "materialType": ("CodeableConcept", False, False, None, None),
    },
    "SubstanceSourceMaterial.organism": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "family": ("CodeableConcept", False, False, None, None),
        "genus": ("CodeableConcept", False, False, None, None),
        "species": ("CodeableConcept", False, False, None, None),
        "intraspecificType": ("CodeableConcept", False, False, None, None),
        "intraspecificDescription": ("string", False, False, None, None),
        "author": ("SubstanceSourceMaterial.organism.author", True, False, None, None),
        "hybrid": ("SubstanceSourceMaterial.organism.hybrid", False, False, None, None),
        "organismGeneral": ("SubstanceSourceMaterial.organism.organismGeneral", False, False, None, None),
    },
    "SubstanceSourceMaterial.organism.author": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "authorType": ("CodeableConcept", False, False, None, None),
        "authorDescription": ("string", False, False, None, None),
    },
    "SubstanceSourceMaterial.organism.hybrid": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "maternalOrganismId": ("string", False, False, None, None),
        "maternalOrganismName": ("string", False, False, None, None),
        "paternalOrganismId": ("string", False, False, None, None),
        "paternalOrganismName": ("string", False, False, None, None),
        "hybridType": ("CodeableConcept", False, False, None, None),
    },
    "SubstanceSourceMaterial.organism.organismGeneral": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "kingdom": ("CodeableConcept", False, False, None, None),
        "phylum": ("CodeableConcept", False, False, None, None),
        "class": ("CodeableConcept", False, False, None, None),
        "order": ("CodeableConcept", False, False, None, None),
    },
    "SubstanceSourceMaterial.partDescription": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "part": ("CodeableConcept", False, False, None, None),
        "partLocation": ("CodeableConcept", False, False, None, None),
    },
    "SubstanceSpecification": {
        "id": ("id", False, False, None, None),
        "meta": ("Meta", False, False, None, None),
        "implicitRules": ("uri", False, False, None, None),
        "language": ("code", False, False, None, None),
        "text": ("Narrative", False, False, None, None),
        "contained": ("Resource", True, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "identifier": ("Identifier", False, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "status": ("CodeableConcept", False, False, None, None),
        "domain": ("CodeableConcept", False, False, None, None),
        "description": ("string", False, False, None, None),
        "source": ("Reference", True, False, None, None),
        "comment": ("string", False, False, None, None),
        "moiety": ("SubstanceSpecification.moiety", True, False, None, None),
        "property": ("SubstanceSpecification.property", True, False, None, None),
        "referenceInformation": ("Reference", False, False, None, None),
        "structure": ("SubstanceSpecification.structure", False, False, None, None),
        "code": ("SubstanceSpecification.code", True, False, None, None),
        "name": ("SubstanceSpecification.name", True, False, None, None),
        "relationship": ("SubstanceSpecification.relationship", True, False, None, None),
        "nucleicAcid": ("Reference", False, False, None, None),
        "polymer": ("Reference", False, False, None, None),
        "protein": ("Reference", False, False, None, None),
        "sourceMaterial": ("Reference", False, False, None, None),
        "molecularWeight": ("SubstanceSpecification.structure.isotope.molecularWeight", True, False, None, None),
    },
    "SubstanceSpecification.code": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "code": ("CodeableConcept", False, False, None, None),
        "status": ("CodeableConcept", False, False, None, None),
        "statusDate": ("dateTime", False, False, None, None),
        "comment": ("string", False, False, None, None),
        "source": ("Reference", True, False, None, None),
    },
    "SubstanceSpecification.moiety": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "role": ("CodeableConcept", False, False, None, None),
        "identifier": ("Identifier", False, False, None, None),
        "name": ("string", False, False, None, None),
        "stereochemistry": ("CodeableConcept", False, False, None, None),
        "opticalActivity": ("CodeableConcept", False, False, None, None),
        "molecularFormula": ("string", False, False, None, None),
        "amountQuantity": ("Quantity", False, False, "amount[x]", None),
        "amountString": ("string", False, False, "amount[x]", None),
    },
    "SubstanceSpecification.name": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "name": ("string", False, True, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "status": ("CodeableConcept", False, False, None, None),
        "preferred": ("boolean", False, False, None, None),
        "language": ("CodeableConcept", True, False, None, None),
        "domain": ("CodeableConcept", True, False, None, None),
        "jurisdiction": ("CodeableConcept", True, False, None, None),
        "synonym": ("SubstanceSpecification.name", True, False, None, None),
        "translation": ("SubstanceSpecification.name", True, False, None, None),
        "official": ("SubstanceSpecification.name.official", True, False, None, None),
        "source": ("Reference", True, False, None, None),
    },
    "SubstanceSpecification.name.official": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "authority": ("CodeableConcept", False, False, None, None),
        "status": ("CodeableConcept", False, False, None, None),
        "date": ("dateTime", False, False, None, None),
    },
    "SubstanceSpecification.property": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "category": ("CodeableConcept", False, False, None, None),
        "code": ("CodeableConcept", False, False, None, None),
        "parameters": ("string", False, False, None, None),
        "definingSubstanceReference": ("Reference", False, False, "definingSubstance[x]", None),
        "definingSubstanceCodeableConcept": ("CodeableConcept", False, False, "definingSubstance[x]", None),
        "amountQuantity": ("Quantity", False, False, "amount[x]", None),
        "amountString": ("string", False, False, "amount[x]", None),
    },
    "SubstanceSpecification.relationship": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "substanceReference": ("Reference", False, False, "substance[x]", None),
        "substanceCodeableConcept": ("CodeableConcept", False, False, "substance[x]", None),
        "relationship": ("CodeableConcept", False, False, None, None),
        "isDefining": ("boolean", False, False, None, None),
        "amountQuantity": ("Quantity", False, False, "amount[x]", None),
        "amountRange": ("Range", False, False, "amount[x]", None),
        "amountRatio": ("Ratio", False, False, "amount[x]", None),
        "amountString": ("string", False, False, "amount[x]", None),
        "amountRatioLowLimit": ("Ratio", False, False, None, None),
        "amountType": ("CodeableConcept", False, False, None, None),
        "source": ("Reference", True, False, None, None),
    },
    "SubstanceSpecification.structure": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "stereochemistry": ("CodeableConcept", False, False, None, None),
        "opticalActivity": ("CodeableConcept", False, False, None, None),
        "molecularFormula": ("string", False, False, None, None),
        "molecularFormulaByMoiety": ("string", False, False, None, None),
        "isotope": ("SubstanceSpecification.structure.isotope", True, False, None, None),
        "molecularWeight": ("SubstanceSpecification.structure.isotope.molecularWeight", False, False, None, None),
        "source": ("Reference", True, False, None, None),
        "representation": ("SubstanceSpecification.structure.representation", True, False, None, None),
    },
    "SubstanceSpecification.structure.isotope": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "identifier": ("Identifier", False, False, None, None),
        "name": ("CodeableConcept", False, False, None, None),
        "substitution": ("CodeableConcept", False, False, None, None),
        "halfLife": ("Quantity", False, False, None, None),
        "molecularWeight": ("SubstanceSpecification.structure.isotope.molecularWeight", False, False, None, None),
    },
    "SubstanceSpecification.structure.isotope.molecularWeight": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "method": ("CodeableConcept", False, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "amount": ("Quantity", False, False, None, None),
    },
    "SubstanceSpecification.structure.representation": {
        "id": ("string", False, False, None, None),
        "extension": ("Extension", True, False, None, None),
        "modifierExtension": ("Extension", True, False, None, None),
        "type": ("CodeableConcept", False, False, None, None),
        "representation": ("string", False, False, None, None),
        "attachment": ("Attachment", False, False, None, None),
    },
}
